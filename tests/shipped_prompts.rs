//! The shipped prompt library: `promptdeck check` passes on it, and every case of every prompt
//! renders to the reviewed snapshot.

mod common;

use common::{repo_root, run_in};
use promptdeck::library;
use promptdeck::project::Project;

#[test]
fn check_passes_on_the_shipped_library() {
    let run = run_in(&repo_root(), &["check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.is_empty(),
        "the shipped library has warnings:\n{}",
        run.stderr
    );
}

#[test]
fn every_shipped_prompt_renders_every_case() {
    let project = Project::discover(&repo_root(), None).expect("repo root is a project");
    let prompts = project.list_prompts().expect("list prompts");
    assert!(
        prompts.len() >= 15,
        "the library shrank to {} prompts",
        prompts.len()
    );
    for file in prompts {
        let (unit, warnings) =
            library::load_unit(&project, &file).unwrap_or_else(|d| panic!("{file}: {d:?}"));
        assert!(warnings.is_empty(), "{file}: {warnings:?}");
        let suite = unit
            .suite
            .as_ref()
            .unwrap_or_else(|| panic!("{file} has no tests file"));
        assert!(suite.cases.len() >= 3, "{file} has fewer than 3 cases");
        let mut out = String::new();
        for case in &suite.cases {
            assert!(
                !case.assertions.is_empty(),
                "{file} case {} has no assertions",
                case.label()
            );
            let rendered =
                library::render_case(&project, &unit, Some(case), &serde_json::Map::new())
                    .unwrap_or_else(|d| panic!("{d}"));
            out.push_str(&format!(
                "=== case {} | backend {} | parameters {}\n",
                case.label(),
                rendered.backend,
                serde_json::to_string(&rendered.parameters).unwrap()
            ));
            out.push_str(&promptdeck::cli::render::format_text(&rendered.messages));
            out.push('\n');
        }
        let name = file.trim_end_matches(".prompty").replace('/', "__");
        insta::assert_snapshot!(name, out);
    }
}
