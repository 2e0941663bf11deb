//! Tag lists, the catalog and referrers, all paginated.

use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, RepoName};

use crate::{Registry, RegistryError, Result};

/// Most entries returned in one page, whatever `n` asks for (a `Link` header leads on).
pub const MAX_PAGE: usize = 10_000;

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// Whether more entries follow the last one.
    pub more: bool,
}

impl<T> Page<T> {
    fn from_overfetch(mut items: Vec<T>, limit: usize) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        Page { items, more }
    }
}

fn page_limit(n: Option<usize>) -> usize {
    n.unwrap_or(MAX_PAGE).min(MAX_PAGE)
}

impl Registry {
    /// Tags of `repo` in lexical order after `last`; `n` entries at most (`n = 0` gives none).
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page<String>> {
        let limit = page_limit(n);
        if limit == 0 {
            // Still report an unknown repository as such.
            self.meta
                .list_tags(repo, None, 0)
                .await?
                .ok_or(RegistryError::NameUnknown)?;
            return Ok(Page {
                items: Vec::new(),
                more: false,
            });
        }
        let items = self
            .meta
            .list_tags(repo, last, limit + 1)
            .await?
            .ok_or(RegistryError::NameUnknown)?;
        Ok(Page::from_overfetch(items, limit))
    }

    /// Repository names in lexical order after `last`; `n` entries at most.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<Page<String>> {
        let limit = page_limit(n);
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                more: false,
            });
        }
        let items = self.meta.list_repositories(last, limit + 1).await?;
        Ok(Page::from_overfetch(items, limit))
    }

    /// Manifests in `repo` whose subject is `subject`, optionally filtered by artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        n: Option<usize>,
        last: Option<&Digest>,
    ) -> Result<Page<Descriptor>> {
        let limit = page_limit(n).max(1);
        let items = self
            .meta
            .referrers(repo, subject, artifact_type, last, limit + 1)
            .await?;
        Ok(Page::from_overfetch(items, limit))
    }
}
