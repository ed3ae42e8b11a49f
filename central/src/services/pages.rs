//! Paged, filtered list reads. A page token is the key path of the last record examined, so a
//! list resumes exactly after it even while records are added or removed.

use meridian_store::tables::{Record, Table, TableKeyDyn};

use super::error::ApiError;

/// Which page of a list a caller wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// `next_page_token` of the previous page; empty for the first page.
    pub token: String,
    /// Most entries wanted; 0 means the default.
    pub size: u32,
}

/// Default entries per page.
pub const DEFAULT_PAGE: u32 = 100;
/// Longest page token accepted.
const MAX_TOKEN: usize = 512;

/// One page of `table` (under `parent`), keeping records for which `keep` holds.
pub async fn page<R: Record>(
    table: &Table<R>,
    parent: Option<&(dyn TableKeyDyn + Sync)>,
    request: &PageRequest,
    max_page: u32,
    keep: impl Fn(&R) -> bool,
) -> Result<(Vec<R>, String), ApiError> {
    let (page_token, page_size) = (request.token.as_str(), request.size);
    if page_token.len() > MAX_TOKEN || page_token.contains("..") {
        return Err(ApiError::invalid(
            "page_token",
            "is not a token this API returned; pass next_page_token unchanged",
        ));
    }
    if page_size > max_page {
        return Err(ApiError::invalid(
            "page_size",
            format!("{page_size} is over the limit; at most {max_page} per page"),
        ));
    }
    let want = if page_size == 0 {
        DEFAULT_PAGE.min(max_page)
    } else {
        page_size
    } as usize;
    let mut out = Vec::with_capacity(want);
    let mut after = (!page_token.is_empty()).then(|| page_token.to_owned());
    loop {
        let chunk = table.list(parent, after.as_deref(), want).await?;
        let last = chunk.items.last().map(|v| v.record.key_path());
        for item in chunk.items {
            if keep(&item.record) {
                out.push(item.record);
                if out.len() == want {
                    // Resume after this record (more may follow).
                    let next = out.last().map(Record::key_path).unwrap_or_default();
                    return Ok((out, next));
                }
            }
        }
        match (chunk.next, last) {
            (Some(_), Some(last)) => after = Some(last),
            _ => return Ok((out, String::new())),
        }
    }
}

/// One page of an in-memory list, ordered by `id`, after the page token.
pub fn page_of<T>(
    mut items: Vec<T>,
    request: &PageRequest,
    max_page: u32,
    id: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, String), ApiError> {
    let (page_token, page_size) = (request.token.as_str(), request.size);
    if page_size > max_page {
        return Err(ApiError::invalid(
            "page_size",
            format!("{page_size} is over the limit; at most {max_page} per page"),
        ));
    }
    items.retain(|t| page_token.is_empty() || id(t) > page_token);
    items.sort_by(|a, b| id(a).cmp(id(b)));
    let size = if page_size == 0 {
        DEFAULT_PAGE.min(max_page)
    } else {
        page_size
    } as usize;
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(|t| id(t).to_owned()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((items, next))
}
