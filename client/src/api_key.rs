//! The API key every call carries.

use std::fmt;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::Status;

use crate::ClientError;

/// Longest key accepted (the server looks at no more of a credential header).
const MAX_KEY_BYTES: usize = 500;

/// Adds `authorization: Bearer <key>` to every call:
/// `AbisClient::with_interceptor(channel, ApiKeyInterceptor::new(&key)?)`. The key is marked
/// sensitive and never printed.
#[derive(Clone)]
pub struct ApiKeyInterceptor {
    value: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for ApiKeyInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyInterceptor(..)")
    }
}

impl ApiKeyInterceptor {
    pub fn new(key: &str) -> Result<Self, ClientError> {
        let key = key.trim();
        let invalid = || ClientError::Usage("an API key is printable ASCII without spaces".into());
        if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid());
        }
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {key}").parse().map_err(|_| invalid())?;
        value.set_sensitive(true);
        Ok(ApiKeyInterceptor { value: Some(value) })
    }

    /// With `None`, sends nothing (one client type whether or not a key was given).
    pub fn optional(key: Option<&str>) -> Result<Self, ClientError> {
        match key {
            Some(key) => ApiKeyInterceptor::new(key),
            None => Ok(ApiKeyInterceptor { value: None }),
        }
    }
}

impl tonic::service::Interceptor for ApiKeyInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn sends_a_bearer_header_only_when_given_a_key() {
        let mut with = ApiKeyInterceptor::new("abis_k3y").unwrap();
        let r = with.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            r.metadata().get("authorization").unwrap(),
            "Bearer abis_k3y"
        );
        let mut without = ApiKeyInterceptor::optional(None).unwrap();
        let r = without.call(tonic::Request::new(())).unwrap();
        assert!(r.metadata().get("authorization").is_none());
        assert!(ApiKeyInterceptor::new("has space").is_err());
        assert!(ApiKeyInterceptor::new("").is_err());
        assert!(!format!("{with:?}").contains("k3y"), "key never printed");
    }
}
