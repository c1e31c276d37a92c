//! Validation of the `smartmodules` tail of a ProduceRequest.
//!
//! The guard never runs smartmodules, but it must know where the body ends to
//! reject trailing bytes, and it must refuse a tail that Fluvio's decoder
//! would refuse. So the tail is walked, never decoded into values.
//!
//! Element layout (`SmartModuleInvocation`), by api_version:
//!
//! ```text
//! wasm:   u8 tag  0 Predefined(String) | 1 AdHoc(i32 len + bytes)
//! kind:   u8 tag  0 Filter | 1 Map | 2 ArrayMap | 4 FilterMap
//!                 3 Aggregate{i32 len + bytes} | 5 Join(String)
//!                 6 JoinStream{String, String}
//!                 7 Generic(u8 tag 0 None | 1 Aggregate{bytes} | 2 Join(String)
//!                                  | 3 JoinStream{String, String})
//! params: u16 count + (String, String)*
//!         [v20+] lookback: Option<{ last: u64, [v21+] age: Option<u64 secs + u32 nanos> }>
//! [v25+]  name: Option<String>
//! ```
//!
//! Tags are never version-gated on the wire; only struct fields are.

use crate::error::{Field, WireError};
use crate::reader::{Fail, Reader};

const F: Field = Field::SmartModule;

/// First api_version whose params carry a `lookback`.
const LOOKBACK_VERSION: i16 = 20;
/// First api_version whose `lookback` carries an `age`.
const LOOKBACK_AGE_VERSION: i16 = 21;
/// First api_version whose invocation carries a `name`.
const NAME_VERSION: i16 = 25;
/// Versions before this one historically sent no smartmodules field at all.
pub(crate) const SMARTMODULES_VERSION: i16 = 8;

/// Walks the smartmodule list at `r`, returning how many invocations it holds.
#[inline(always)]
pub(crate) fn skip_invocations<E: Fail>(r: &mut Reader<'_, E>, version: i16) -> Result<usize, E> {
    // Producers nearly always end the body with an empty list: four zero
    // bytes and nothing after them, recognised with one length and one
    // value compare (and the caller's trailing-bytes check folds away).
    if r.rest_is(&[0; 4]) {
        r.consume_peeked::<4>();
        return Ok(0);
    }
    // A pre-v8 client sent no list; Fluvio 0.50 chokes on that, we take it as empty.
    if version < SMARTMODULES_VERSION && r.remaining() == 0 {
        return Ok(0);
    }
    let count = r.len_i32(Field::SmartModuleCount)?;
    if count > 0 {
        // A copy goes out of line, so `r` itself can stay in registers.
        let mut rest = *r;
        skip_list(&mut rest, count, version)?;
        *r = rest;
    }
    Ok(count)
}

/// Producers rarely send smartmodules: the walk over them stays out of line.
#[cold]
#[inline(never)]
fn skip_list<E: Fail>(r: &mut Reader<'_, E>, count: usize, version: i16) -> Result<(), E> {
    for _ in 0..count {
        skip_invocation(r, version)?;
    }
    Ok(())
}

#[inline]
fn skip_invocation<E: Fail>(r: &mut Reader<'_, E>, version: i16) -> Result<(), E> {
    match r.u8(F)? {
        0 => r.skip_str(F)?,
        1 => r.skip_bytes(F)?,
        tag => return Err(E::from_error(|| WireError::InvalidTag { field: F, tag })),
    }
    match r.u8(F)? {
        0 | 1 | 2 | 4 => {}
        3 => r.skip_bytes(F)?,
        5 => r.skip_str(F)?,
        6 => {
            r.skip_str(F)?;
            r.skip_str(F)?;
        }
        7 => match r.u8(F)? {
            0 => {}
            1 => r.skip_bytes(F)?,
            2 => r.skip_str(F)?,
            3 => {
                r.skip_str(F)?;
                r.skip_str(F)?;
            }
            tag => return Err(E::from_error(|| WireError::InvalidTag { field: F, tag })),
        },
        tag => return Err(E::from_error(|| WireError::InvalidTag { field: F, tag })),
    }
    let params = r.u16(F)?;
    for _ in 0..params {
        r.skip_str(F)?;
        r.skip_str(F)?;
    }
    if version >= LOOKBACK_VERSION && r.flag(F)? {
        r.skip_fixed::<8>(F)?; // last: u64
        if version >= LOOKBACK_AGE_VERSION && r.flag(F)? {
            r.skip_fixed::<12>(F)?; // age: Duration = u64 secs + u32 nanos
        }
    }
    if version >= NAME_VERSION && r.flag(F)? {
        r.skip_str(F)?;
    }
    Ok(())
}
