//! The C ABI from C: builds the static library for this test run's profile,
//! compiles `crates/nextbest-capi/tests/c/ffi_test.c` against it and runs it from the repository
//! root; compiles the same file as C++ to prove the header is C++-clean;
//! compiles and runs `examples/c/contact_center.c`.
//!
//! Skipped (with a message) only when `gcc` (or, for the C++ check, `g++`)
//! is not installed. With `NEXTBEST_VALGRIND=1` (CI sets it) and valgrind
//! installed, the C test also runs under
//! `valgrind --leak-check=full --error-exitcode=1 --errors-for-leak-kinds=definite,indirect`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const C_FLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Iinclude",
];
const CXX_FLAGS: &[&str] = &[
    "-x",
    "c++",
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Iinclude",
];
/// The C test program, from the repository root.
const FFI_TEST: &str = "crates/nextbest-capi/tests/c/ffi_test.c";
const LIBS: &[&str] = &["-lpthread", "-ldl", "-lm"];

/// The repository root: the C programs run from there (rule directories,
/// `include/` and `examples/` are relative to it).
fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .expect("the repository root")
    })
}

/// This crate's directory (the C test's source).
fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where this test binary was built: `<target>/[<triple>/]<profile>/deps/`.
struct Build {
    target_dir: PathBuf,
    triple: Option<String>,
    profile_dir: PathBuf,
}

fn this_build() -> Build {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in <target>/<profile>/deps")
        .to_path_buf();
    let above = profile_dir
        .parent()
        .expect("a target directory")
        .to_path_buf();
    // Cargo marks the target directory's root with CACHEDIR.TAG; without it,
    // the level above the profile is a target triple (`--target`).
    if above.join("CACHEDIR.TAG").exists() {
        Build {
            target_dir: above,
            triple: None,
            profile_dir,
        }
    } else {
        let triple = above.file_name().map(|n| n.to_string_lossy().into_owned());
        Build {
            target_dir: above.parent().expect("a target directory").to_path_buf(),
            triple,
            profile_dir,
        }
    }
}

/// The static library for this test run's profile, built (once per test
/// binary) with `cargo build --lib`: the test build compiles the rlib, not
/// necessarily the staticlib.
fn static_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let build = this_build();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo_root())
            .args(["build", "--lib", "--manifest-path"])
            .arg(crate_dir().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&build.target_dir);
        match build.profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => panic!("no profile directory in {}", build.profile_dir.display()),
        }
        if let Some(t) = &build.triple {
            cmd.args(["--target", t]);
        }
        let out = cmd.output().expect("running cargo build --lib");
        assert_success("cargo build --lib", &out);
        let lib = build.profile_dir.join("libnextbest.a");
        assert!(lib.exists(), "{} was not built", lib.display());
        lib
    })
}

/// Where this test's compiled C programs go.
fn out_dir() -> PathBuf {
    let dir = this_build().profile_dir.join("ffi-c");
    std::fs::create_dir_all(&dir).expect("creating the output directory");
    dir
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compile and link `source` against the static library with `C_FLAGS`.
fn compile_c(source: &str, name: &str) -> Option<PathBuf> {
    if !have("gcc") {
        eprintln!("SKIPPED: gcc is not installed, so {source} was not compiled or run");
        return None;
    }
    let exe = out_dir().join(name);
    let out = Command::new("gcc")
        .current_dir(repo_root())
        .args(C_FLAGS)
        .arg(source)
        .arg(static_lib())
        .args(LIBS)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("running gcc");
    assert_success(&format!("gcc {source}"), &out);
    Some(exe)
}

#[test]
fn c_program_checks_every_function_and_error_path() {
    let Some(exe) = compile_c(FFI_TEST, "ffi_test") else {
        return;
    };
    let out = Command::new(&exe)
        .current_dir(repo_root())
        .output()
        .expect("running ffi_test");
    assert_success(FFI_TEST, &out);

    if std::env::var("NEXTBEST_VALGRIND").as_deref() != Ok("1") {
        return;
    }
    if !have("valgrind") {
        eprintln!("SKIPPED: NEXTBEST_VALGRIND=1 but valgrind is not installed");
        return;
    }
    let out = Command::new("valgrind")
        .current_dir(repo_root())
        .args([
            "--leak-check=full",
            "--error-exitcode=1",
            "--errors-for-leak-kinds=definite,indirect",
        ])
        .arg(&exe)
        .output()
        .expect("running valgrind");
    assert_success("valgrind ffi_test.c", &out);
}

#[test]
fn header_and_test_compile_as_cplusplus() {
    if !have("g++") {
        eprintln!(
            "SKIPPED: g++ is not installed, so the header's C++ compatibility was not checked"
        );
        return;
    }
    let obj = out_dir().join("ffi_test_cxx.o");
    let out = Command::new("g++")
        .current_dir(repo_root())
        .args(CXX_FLAGS)
        .args(["-c", FFI_TEST, "-o"])
        .arg(&obj)
        .output()
        .expect("running g++");
    assert_success("g++ -x c++ ffi_test.c", &out);
}

#[test]
fn contact_center_example_compiles_cleanly_and_runs() {
    let Some(exe) = compile_c("examples/c/contact_center.c", "contact_center") else {
        return;
    };
    let customers = std::fs::read(repo_root().join("rules/retail_bank/customers.jsonl"))
        .expect("reading the retail_bank customers");
    let mut child = Command::new(&exe)
        .current_dir(repo_root())
        .arg("rules/retail_bank")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running contact_center");
    // Feed stdin from another thread: the child's output fills its pipe
    // long before it has read 2,000 customers.
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&customers).expect("writing customers");
    });
    let out = child
        .wait_with_output()
        .expect("waiting for contact_center");
    feeder.join().expect("the stdin feeder");
    assert_success("examples/c/contact_center.c", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("RET_COMPLAINT_CALLBACK"), "{stdout}");
    assert!(
        stdout.contains("RB000001") && stdout.contains("RB002000"),
        "{stdout}"
    );
}

/// The C example in the README compiles cleanly and decides.
#[test]
fn the_readme_c_example_compiles_and_runs() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start = readme.find("```c\n").expect("a ```c block in the README") + 5;
    let len = readme[start..]
        .find("```")
        .expect("the end of the ```c block");
    let source = out_dir().join("readme_example.c");
    std::fs::write(&source, &readme[start..start + len]).expect("writing the example");
    let Some(exe) = compile_c(source.to_str().expect("a UTF-8 path"), "readme_example") else {
        return;
    };
    let out = Command::new(&exe)
        .current_dir(repo_root())
        .output()
        .expect("running the README example");
    assert_success("the README's C example", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"actions\""), "{stdout}");
}
