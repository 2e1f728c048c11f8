//! ward-net's integration tests, one binary for the crate (each test binary links the
//! whole crate once).

mod mutual_tls;
