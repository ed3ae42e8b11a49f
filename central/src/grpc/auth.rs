//! Reading the bearer token of a gRPC request.

use tonic::metadata::MetadataMap;

use crate::services::ApiError;
use crate::services::auth::UNAUTHENTICATED;

/// The token of the request's one `authorization` header, read as RFC 7235 and RFC 6750 say:
/// the scheme `Bearer` in any case, then one or more spaces, then the token. A request with
/// more than one `authorization` header is refused (which one would count is ambiguous).
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, ApiError> {
    let mut headers = metadata.get_all("authorization").iter();
    let header = headers
        .next()
        .ok_or_else(|| ApiError::Unauthenticated(UNAUTHENTICATED.into()))?;
    if headers.next().is_some() {
        return Err(ApiError::Unauthenticated(
            "the request carries more than one `authorization` header; send exactly one".into(),
        ));
    }
    let header = header
        .to_str()
        .map_err(|_| ApiError::Unauthenticated(UNAUTHENTICATED.into()))?;
    let (scheme, rest) = header
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthenticated(UNAUTHENTICATED.into()))?;
    let token = rest.trim_start_matches(' ').trim_end();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(ApiError::Unauthenticated(UNAUTHENTICATED.into()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for v in values {
            m.append("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn the_bearer_scheme_is_read_as_the_rfcs_say() {
        for ok in [
            "Bearer tok-1.ab",
            "bearer tok-1.ab",
            "BEARER tok-1.ab",
            "bEaReR tok-1.ab",
            "Bearer  tok-1.ab",
            "Bearer    tok-1.ab",
        ] {
            assert_eq!(bearer_token(&with(&[ok])).unwrap(), "tok-1.ab", "{ok:?}");
        }
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearertok-1.ab",
            "Basic tok-1.ab",
            "Bearer tok-1 .ab",
            "tok-1.ab",
        ] {
            assert!(bearer_token(&with(&[bad])).is_err(), "{bad:?}");
        }
        assert!(bearer_token(&MetadataMap::new()).is_err());
        let two = bearer_token(&with(&["Bearer tok-1.ab", "Bearer tok-2.cd"])).unwrap_err();
        assert!(two.to_string().contains("more than one"), "{two}");
    }
}
