//! Replays the seed corpora (`corpus/<target>/`) and every past finding
//! (`regressions/<target>/`) through the targets' properties under plain `cargo test`, so CI
//! checks them without libFuzzer.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn corpora_and_regressions_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, check) in mwi_store_fuzz::TARGETS {
        let seeds = files(&root.join("corpus").join(name));
        assert!(
            seeds.len() >= 3,
            "{name}: seed corpus has {} files",
            seeds.len()
        );
        for file in seeds
            .iter()
            .chain(&files(&root.join("regressions").join(name)))
        {
            let data = std::fs::read(file).expect("corpus file readable");
            eprintln!("{name}: {}", file.display());
            check(&data);
        }
    }
}
