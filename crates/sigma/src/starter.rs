//! The starter pack (`rules/` in the project), built in and loaded unless
//! `--no-default-rules`. See `rules/README.md`.

/// The starter pack's files: name and text.
pub const FILES: &[(&str, &str)] = &[
    ("personal-data-access.yml", include_str!("../../../rules/personal-data-access.yml")),
    ("entrance-codes.yml", include_str!("../../../rules/entrance-codes.yml")),
    ("staff-access.yml", include_str!("../../../rules/staff-access.yml")),
];
