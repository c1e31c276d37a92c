//! What the SC's public port advertises in ApiVersions: the same rows to
//! clients and to remote SCs (the mirroring stream is served on that port
//! too, in plaintext or over TLS).

use mg_wire::ApiVersionKey;

/// The Fluvio platform version this SC speaks (0.50.1's platform).
pub const PLATFORM_VERSION: &str = "0.18.1";

/// What the SC advertises: the rows Fluvio's SC advertises, then
/// mirror-guard's own keys (`mg_controlplane::operate`), by which a remote
/// SC knows that its home speaks MirrorStates.
pub const SERVED_VERSIONS: [ApiVersionKey; 9] = [
    ApiVersionKey {
        api_key: 1001,
        min_version: 9,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1002,
        min_version: 1,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1003,
        min_version: 15,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1004,
        min_version: 15,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1005,
        min_version: 14,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1006,
        min_version: 1,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: mg_controlplane::operate::MIRROR_OPERATE_KEY,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionKey {
        api_key: mg_controlplane::operate::MIRROR_REPORT_KEY,
        min_version: 0,
        max_version: 0,
    },
    ApiVersionKey {
        api_key: mg_controlplane::operate::MIRROR_STATES_KEY,
        min_version: 0,
        max_version: 0,
    },
];
