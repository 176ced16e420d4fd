// Bake the libtorch folder that torch-sys linked against into the binary's rpath, so
// `clip-ast` runs without anyone setting LD_LIBRARY_PATH. torch-sys (links = "tch")
// publishes that folder to direct dependents as DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
