//! A small SQL builder for queries whose WHERE clause depends on the request. It numbers `$n`
//! placeholders itself because sqlx's `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL
//! does not accept.

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Encode, Type};

pub struct Sql {
    text: String,
    args: AnyArguments<'static>,
    count: usize,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + Send + for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.count += 1;
        self.text.push('$');
        self.text.push_str(&self.count.to_string());
        // Encoding into `AnyArguments` only fails for types the driver cannot carry, which `T: Type<Any>` rules out.
        let _ = self.args.add(value);
        self
    }

    pub fn into_parts(self) -> (String, AnyArguments<'static>) {
        (self.text, self.args)
    }
}
