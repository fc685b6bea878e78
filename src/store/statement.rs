//! A write statement whose arguments are plain values, so that one statement runs on either backend:
//! through sqlx on PostgreSQL, and through rusqlite on SQLite's group-commit thread (see
//! [`super::group_commit`]), which runs statements itself instead of sending each to a sqlx worker
//! thread.

use std::borrow::Cow;

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::Arguments;
use sqlx::any::AnyArguments;

use crate::domain::{
    BidId, BookingId, DecisionId, GpuId, Money, OrderId, PrincipalId, ReviewId, Timestamp,
};

/// What a NULL stands in for: PostgreSQL types every parameter, a NULL included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Real,
    Text,
}

/// One argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null(Kind),
    Bool(bool),
    Int(i64),
    Real(f64),
    Text(String),
}

/// A type that binds as one [`Value`].
pub trait Bind {
    const KIND: Kind;
    fn into_value(self) -> Value;
}

macro_rules! bind_as {
    ($kind:ident, $variant:ident, |$v:ident| $convert:expr, $($ty:ty),+) => {$(
        impl Bind for $ty {
            const KIND: Kind = Kind::$kind;
            fn into_value(self) -> Value {
                let $v = self;
                Value::$variant($convert)
            }
        }
        impl Bind for &$ty {
            const KIND: Kind = Kind::$kind;
            fn into_value(self) -> Value {
                let $v = self.clone();
                Value::$variant($convert)
            }
        }
    )+};
}

bind_as!(Int, Int, |v| v, i64);
bind_as!(Int, Int, |v| i64::from(v), i32, u32);
bind_as!(Int, Int, |v| v.micros(), Money, Timestamp);
bind_as!(Real, Real, |v| v, f64);
bind_as!(Bool, Bool, |v| v, bool);
bind_as!(Text, Text, |v| v, String);
bind_as!(
    Text,
    Text,
    |v| v.as_str().to_owned(),
    GpuId,
    BookingId,
    OrderId,
    ReviewId,
    BidId,
    DecisionId,
    PrincipalId
);

impl Bind for &str {
    const KIND: Kind = Kind::Text;
    fn into_value(self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl<T: Bind> Bind for Option<T> {
    const KIND: Kind = T::KIND;
    fn into_value(self) -> Value {
        self.map_or(Value::Null(T::KIND), Bind::into_value)
    }
}

impl<T: Bind + Clone> Bind for &Option<T> {
    const KIND: Kind = T::KIND;
    fn into_value(self) -> Value {
        self.clone().into_value()
    }
}

impl Value {
    /// Adds this value to sqlx arguments (PostgreSQL, and reads on either backend).
    pub(super) fn add_to(self, args: &mut AnyArguments<'static>) {
        // Adding fails only for types the `Any` driver cannot carry; these are all its own kinds.
        let _ = match self {
            Value::Null(Kind::Bool) => args.add(None::<bool>),
            Value::Null(Kind::Int) => args.add(None::<i64>),
            Value::Null(Kind::Real) => args.add(None::<f64>),
            Value::Null(Kind::Text) => args.add(None::<String>),
            Value::Bool(value) => args.add(value),
            Value::Int(value) => args.add(value),
            Value::Real(value) => args.add(value),
            Value::Text(value) => args.add(value),
        };
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null(_) => ValueRef::Null,
            Value::Bool(value) => ValueRef::Integer(i64::from(*value)),
            Value::Int(value) => ValueRef::Integer(*value),
            Value::Real(value) => ValueRef::Real(*value),
            Value::Text(value) => ValueRef::Text(value.as_bytes()),
        }))
    }
}

/// One statement and its arguments, `$1`, `$2`, ... in the text.
#[derive(Debug, Clone)]
pub struct Statement {
    text: Cow<'static, str>,
    args: Vec<Value>,
}

impl Statement {
    pub fn new(text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next placeholder.
    pub fn bind(mut self, value: impl Bind) -> Self {
        self.args.push(value.into_value());
        self
    }

    pub(super) fn from_parts(text: String, args: Vec<Value>) -> Self {
        Self {
            text: text.into(),
            args,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The arguments as sqlx carries them.
    pub(super) fn any_arguments(&self) -> AnyArguments<'static> {
        any_arguments(self.args.iter().cloned())
    }

    /// Prepares (from the connection's cache) and binds the statement on SQLite. `$n` is a named
    /// parameter there, numbered by first appearance, so each of the statement's parameters is bound
    /// to the argument its name numbers: read off the statement, not looked up by a name formatted per
    /// argument (that lookup was about 4 % of the group-commit thread's profile samples).
    pub(super) fn prepare<'c>(
        &self,
        conn: &'c rusqlite::Connection,
    ) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
        let mut prepared = conn.prepare_cached(&self.text)?;
        for index in 1..=prepared.parameter_count() {
            let name = prepared.parameter_name(index).unwrap_or("?");
            let value = name
                .strip_prefix('$')
                .and_then(|number| number.parse::<usize>().ok())
                .and_then(|number| number.checked_sub(1))
                .and_then(|position| self.args.get(position))
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?;
            prepared.raw_bind_parameter(index, value)?;
        }
        Ok(prepared)
    }

    /// Runs the statement on SQLite; returns the rows it changed.
    pub(super) fn run(&self, conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
        let changed = self.prepare(conn)?.raw_execute()?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }

    /// Runs it on a sqlx connection (PostgreSQL); returns the rows it changed.
    pub(super) async fn run_sqlx(
        &self,
        conn: &mut sqlx::AnyConnection,
        persistent: bool,
    ) -> Result<u64, sqlx::Error> {
        let result = sqlx::query_with(&self.text, self.any_arguments())
            .persistent(persistent)
            .execute(conn)
            .await?;
        Ok(result.rows_affected())
    }
}

pub(super) fn any_arguments(values: impl IntoIterator<Item = Value>) -> AnyArguments<'static> {
    let mut args = AnyArguments::default();
    for value in values {
        value.add_to(&mut args);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_text(conn: &rusqlite::Connection, statement: &Statement) -> rusqlite::Result<String> {
        let mut prepared = statement.prepare(conn)?;
        let mut rows = prepared.raw_query();
        match rows.next()? {
            Some(row) => row.get(0),
            None => Err(rusqlite::Error::QueryReturnedNoRows),
        }
    }

    #[test]
    fn each_parameter_takes_the_argument_its_number_names_in_any_order_and_as_often_as_it_appears()
    {
        let conn = rusqlite::Connection::open_in_memory().expect("opens");
        let statement = Statement::new("SELECT $2 || '-' || $1 || '-' || $2 || '-' || $3")
            .bind("a")
            .bind("b")
            .bind(3_i64);
        assert_eq!(first_text(&conn, &statement).expect("runs"), "b-a-b-3");
        // The cached statement binds afresh on its next use.
        let again = Statement::new("SELECT $2 || '-' || $1 || '-' || $2 || '-' || $3")
            .bind("x")
            .bind("y")
            .bind(4_i64);
        assert_eq!(first_text(&conn, &again).expect("runs"), "y-x-y-4");
    }

    #[test]
    fn a_parameter_without_its_argument_or_not_numbered_is_an_error() {
        let conn = rusqlite::Connection::open_in_memory().expect("opens");
        let missing = Statement::new("SELECT $1 || $2").bind("a");
        assert!(matches!(
            first_text(&conn, &missing),
            Err(rusqlite::Error::InvalidParameterName(name)) if name == "$2"
        ));
        let named = Statement::new("SELECT :name").bind("a");
        assert!(matches!(
            first_text(&conn, &named),
            Err(rusqlite::Error::InvalidParameterName(name)) if name == ":name"
        ));
    }
}
