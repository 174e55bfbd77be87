//! Object stores made on first use from a URL and the environment.
//!
//! DataFusion finds the store for a URL in its [`ObjectStoreRegistry`]. rask's
//! registry builds the store the first time a scheme and bucket are seen, with
//! credentials and settings from the usual environment variables, so that
//! `CREATE EXTERNAL TABLE … LOCATION 's3://bucket/…'`, `FROM 's3://…'` and
//! `COPY … TO 's3://…'` all work with no registration step:
//!
//! | scheme                               | store        | environment                                          |
//! |--------------------------------------|--------------|------------------------------------------------------|
//! | `s3://`, `s3a://`                    | Amazon S3    | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, … |
//! | `gs://`                              | Google Cloud | `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`, … |
//! | `az://`, `azure://`, `abfs[s]://`    | Azure Blob   | `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, … |
//! | `http://`, `https://`                | HTTP         | —                                                    |
//! | `file://` and plain paths            | local files  | —                                                    |

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use url::Url;

/// An [`ObjectStoreRegistry`] that creates stores for cloud URLs on first use.
#[derive(Debug, Default)]
pub struct ObjectStores {
    registered: DefaultObjectStoreRegistry,
}

impl ObjectStores {
    /// A registry holding only the local file system.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ObjectStoreRegistry for ObjectStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.registered.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.registered.get_store(url) {
            return Ok(store);
        }
        let store = store_for_url(url)?;
        self.registered.register_store(url, Arc::clone(&store));
        Ok(store)
    }
}

/// Builds the store serving `url` from the environment.
pub fn store_for_url(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    let bucket = || {
        url.host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| store_error(url, "the URL names no bucket".into()))
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(bucket()?)
                .build()
                .map_err(|e| store_error(url, e.to_string()))?,
        ),
        "gs" | "gcs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket()?)
                .build()
                .map_err(|e| store_error(url, e.to_string()))?,
        ),
        "az" | "azure" | "abfs" | "abfss" | "adl" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| store_error(url, e.to_string()))?,
        ),
        "http" | "https" => {
            let base = &url[..url::Position::BeforePath];
            Arc::new(
                HttpBuilder::new()
                    .with_url(base)
                    .build()
                    .map_err(|e| store_error(url, e.to_string()))?,
            )
        }
        other => {
            return Err(store_error(
                url,
                format!(
                    "unsupported scheme '{other}://' (rask reads s3, gs, az, http(s) and local files)"
                ),
            ));
        }
    };
    Ok(store)
}

fn store_error(url: &Url, message: String) -> DataFusionError {
    DataFusionError::Configuration(format!("cannot open object store for {url}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_stores_by_scheme_and_caches_them() {
        let stores = ObjectStores::new();
        let url = Url::parse("s3://bucket/path/file.parquet").unwrap();
        let a = stores.get_store(&url).unwrap();
        let b = stores
            .get_store(&Url::parse("s3://bucket/other").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            stores
                .get_store(&Url::parse("https://example.com/x.csv").unwrap())
                .is_ok()
        );
        assert!(
            stores
                .get_store(&Url::parse("file:///tmp").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn refuses_unknown_schemes_by_name() {
        let err = store_for_url(&Url::parse("ftp://host/file").unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("unsupported scheme 'ftp://'"),
            "{err}"
        );
    }
}
