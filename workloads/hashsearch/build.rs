//! Exports `cairn_step` from the Wasm binary: a `#[no_mangle]` function in
//! a binary is otherwise dropped by the linker.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-bins=--export=cairn_step");
    }
}
