// `sqlx::migrate!` embeds the migrations at compile time; without this a changed migration would not
// rebuild the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
