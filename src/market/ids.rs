//! Opaque ids: a prefix naming the kind, then 128 random bits, so they never collide across replicas.

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_carry_their_prefix_and_128_bits() {
        let id = super::new_id("gpu");
        assert!(id.starts_with("gpu_"));
        assert_eq!(id.len(), 4 + 32);
        assert_ne!(super::new_id("gpu"), id);
    }
}
