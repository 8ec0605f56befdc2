//! docs/promptdeck.schema.json is the published JSON schema of promptdeck.toml: it must match the
//! config structs. Regenerate with `PROMPTDECK_BLESS=1 cargo test --test config_schema`.

use std::path::Path;

#[test]
fn published_schema_matches_the_config_structs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/promptdeck.schema.json");
    let generated =
        serde_json::to_string_pretty(&promptdeck::project::config_schema()).unwrap() + "\n";
    if std::env::var_os("PROMPTDECK_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == generated,
        "docs/promptdeck.schema.json is out of date; run `PROMPTDECK_BLESS=1 cargo test --test config_schema` and review the diff"
    );
}

#[test]
fn shipped_and_template_configs_validate_against_the_schema_keys() {
    // Both configs parse with the real parser, which denies unknown keys like the schema does.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["promptdeck.toml", "src/cli/init_files/promptdeck.toml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        promptdeck::project::Config::parse(&text, Path::new(file))
            .unwrap_or_else(|d| panic!("{d}"));
    }
}
