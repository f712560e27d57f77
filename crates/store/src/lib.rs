//! store: node-local persistence: content-addressed blobs and the state of jobs and leases.
