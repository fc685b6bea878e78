//! Opaque ids. New ones carry a prefix naming their kind and a UUIDv7 (a millisecond timestamp and 74
//! random bits), so they never collide across replicas; ids from requests are taken as given and
//! looked up.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, unique across replicas.
            pub fn generate() -> Self {
                // UUIDv7: time-ordered, so the ids of new rows append to their unique indexes
                // instead of dirtying a random page each (fewer pages per commit to log and sync).
                Self(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

id_type!(GpuId, "gpu");
id_type!(BookingId, "bk");
id_type!(OrderId, "ord");
id_type!(ReviewId, "rv");
id_type!(BidId, "bid");
id_type!(
    /// One logged policy decision (see `domain::decision`).
    DecisionId,
    "dec"
);
id_type!(
    /// Who acts: a miner, a client or an admin, as named by the API key (or `local`).
    PrincipalId,
    "p"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_128_bits() {
        let id = GpuId::generate();
        assert!(id.as_str().starts_with("gpu_"));
        assert_eq!(id.as_str().len(), 4 + 32);
        assert_ne!(GpuId::generate(), id);
        assert!(BookingId::generate().as_str().starts_with("bk_"));
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        assert_eq!(
            serde_json::to_string(&GpuId::from("gpu_1")).ok().as_deref(),
            Some("\"gpu_1\"")
        );
    }
}
