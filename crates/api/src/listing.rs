//! Tag lists, catalog and referrers, with `Link` pagination.

use axum::body::Body;
use axum::http::{header, StatusCode};
use berth_oci::{media, Digest, ErrorCode, RepoName};
use berth_registry::Registry;
use serde::Serialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::util::{empty, finish, Query};
use crate::FILTERS_HEADER;

/// `GET /v2/<name>/tags/list?n=&last=`.
pub async fn tags(reg: &Registry, repo: &RepoName, q: &Query) -> ApiResult {
    let n = q.page_size()?;
    let page = reg.list_tags(repo, n, q.get("last")).await?;
    let next = next_link(
        page.more,
        page.items.last(),
        n,
        &format!("/v2/{repo}/tags/list"),
    );
    let body = TagList {
        name: repo.as_str(),
        tags: &page.items,
    };
    let size = listing_size(&page.items) + repo.as_str().len();
    json_response(&body, size, "application/json", next, None)
}

/// About the size of a listing body: the names, their quotes and commas, the braces and keys.
fn listing_size(names: &[String]) -> usize {
    names.iter().map(|n| n.len() + 3).sum::<usize>() + 32
}

/// Tag list body, serialised straight from the page (no intermediate `serde_json::Value`).
#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: &'a [String],
}

/// Catalog body, serialised straight from the page.
#[derive(Serialize)]
struct Catalog<'a> {
    repositories: &'a [String],
}

/// `GET /v2/_catalog?n=&last=`.
pub async fn catalog(reg: &Registry, q: &Query) -> ApiResult {
    let n = q.page_size()?;
    let page = reg.catalog(n, q.get("last")).await?;
    let next = next_link(page.more, page.items.last(), n, "/v2/_catalog");
    let body = Catalog {
        repositories: &page.items,
    };
    json_response(
        &body,
        listing_size(&page.items),
        "application/json",
        next,
        None,
    )
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`: an OCI image index of referrers.
pub async fn referrers(reg: &Registry, repo: &RepoName, subject: &Digest, q: &Query) -> ApiResult {
    let n = q.page_size()?;
    let artifact_type = q.get("artifactType").filter(|t| !t.is_empty());
    let last = q
        .get("last")
        .map(|l| {
            Digest::parse(l).map_err(|e| ApiError::msg(ErrorCode::DigestInvalid, e.to_string()))
        })
        .transpose()?;
    let page = reg
        .referrers(repo, subject, artifact_type, n, last.as_ref())
        .await?;
    let last_digest = page.items.last().map(|d| d.digest.to_string());
    let mut next = next_link(
        page.more,
        last_digest.as_ref(),
        n,
        &format!("/v2/{repo}/referrers/{subject}"),
    );
    if let (Some(link), Some(t)) = (&mut next, artifact_type) {
        let enc: String = form_urlencoded::byte_serialize(t.as_bytes()).collect();
        *link = link.replacen(">;", &format!("&artifactType={enc}>;"), 1);
    }
    let index =
        json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": page.items });
    json_response(
        &index,
        1024,
        media::OCI_INDEX,
        next,
        artifact_type.map(|_| "artifactType"),
    )
}

/// Registry pages fetched at a time while filtering the catalog.
const FILTER_BATCH: usize = 1000;
/// Most entries in one filtered page (the registry's own cap).
const MAX_PAGE: usize = 10_000;

/// `GET /v2/_catalog` showing only the repositories `visible` accepts; pagination counts
/// visible entries only, so hidden names never leak through `Link` or page sizes.
pub async fn catalog_filtered(
    reg: &Registry,
    q: &Query,
    visible: &(dyn Fn(&RepoName) -> bool + Sync),
) -> ApiResult {
    let n = q.page_size()?;
    let limit = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let mut items: Vec<String> = Vec::new();
    let mut cursor = q.get("last").map(String::from);
    let mut more = false;
    'pages: loop {
        let page = reg.catalog(Some(FILTER_BATCH), cursor.as_deref()).await?;
        for name in page.items {
            cursor = Some(name.clone());
            if !RepoName::parse(&name).is_ok_and(|r| visible(&r)) {
                continue;
            }
            if items.len() == limit {
                more = true;
                break 'pages;
            }
            items.push(name);
        }
        if !page.more {
            break;
        }
    }
    let next = next_link(more, items.last(), n, "/v2/_catalog");
    let body = Catalog {
        repositories: &items,
    };
    json_response(&body, listing_size(&items), "application/json", next, None)
}

fn next_link(more: bool, last: Option<&String>, n: Option<usize>, path: &str) -> Option<String> {
    let last = last.filter(|_| more)?;
    let enc: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    let n = n.map(|n| format!("n={n}&")).unwrap_or_default();
    Some(format!("<{path}?{n}last={enc}>; rel=\"next\""))
}

/// A JSON body with `Link` and filter headers; `size` presizes the buffer (no regrowth copies).
fn json_response(
    v: &impl Serialize,
    size: usize,
    content_type: &str,
    link: Option<String>,
    filters: Option<&str>,
) -> ApiResult {
    let mut body = Vec::with_capacity(size);
    serde_json::to_writer(&mut body, v).map_err(|e| {
        tracing::error!(error = %e, "serialising a listing failed");
        ApiError::msg(ErrorCode::Unknown, "serialising the listing failed")
    })?;
    let mut b = empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len());
    if let Some(l) = link {
        b = b.header(header::LINK, l);
    }
    if let Some(f) = filters {
        b = b.header(FILTERS_HEADER, f);
    }
    finish(b, Body::from(body))
}
