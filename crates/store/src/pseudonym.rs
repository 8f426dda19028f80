//! Who is written in clear and who as a pseudonym.
//!
//! The store never writes a subject id in clear. A subject id becomes its
//! keyed pseudonym ([`crate::secret::Secret::pseudonym`], HMAC-SHA-256 under
//! the store's secret); the pseudonym's link back to the id is kept only in
//! the encrypted subject map ([`crate::subjects`]) and read only through the
//! audited re-identification path. Principals are pseudonymised the same
//! way unless [`KeepClear`] keeps them: the directory's staff and services,
//! whose ids an investigator needs to read and which are not customers'.
//! Stored findings are pseudonymised with the same key
//! ([`crate::finding::pseudonymise`]).

use model::{PrincipalKind, Symbols};

/// The principal ids the store may keep in clear: those the platform's
/// directory lists as staff or services. Every other principal is taken for
/// a customer (real Authentication events rarely say so: OCSF's user types
/// are User, Admin and System), and a customer's id is a subject id, so it
/// is kept only as its pseudonym. An id also seen as a subject id is
/// pseudonymised whatever the directory says.
#[derive(Clone, Debug, Default)]
pub struct KeepClear {
    ids: std::collections::HashSet<String>,
}

impl KeepClear {
    /// The directory's employees and services.
    pub fn from_directory(d: &model::Directory) -> Self {
        let ids = d
            .principals
            .iter()
            .filter(|p| matches!(p.kind, PrincipalKind::Employee | PrincipalKind::Service))
            .map(|p| p.uid.clone())
            .collect();
        Self { ids }
    }

    /// These ids.
    pub fn of(ids: impl IntoIterator<Item = String>) -> Self {
        Self { ids: ids.into_iter().collect() }
    }

    /// Whether `id` may be written in clear, given what the reader has seen.
    pub fn keeps(&self, id: &str, symbols: &Symbols) -> bool {
        self.ids.contains(id) && symbols.subjects.get(id).is_none()
    }
}
