//! Writing a new store's identity and a new cluster's first region.
//!
//! A store is bootstrapped once: its engine must be empty, then it gets a
//! `StoreIdent`. The cluster's first region is written to the stores that
//! hold its peers, at `RAFT_INIT_LOG_INDEX`/`TERM`, so those peers start
//! with a log every member agrees on and elect a leader among themselves.

use kvproto::metapb;
use kvproto::raft_serverpb::{PeerState, RegionLocalState, StoreIdent};
use storage::keys;
use storage::{CF_DEFAULT, CF_RAFT, Engine};

use crate::errors::{Error, Result};
use crate::peer_storage::{init_apply_state, init_raft_state, write_region_state};

/// The store identity in `engine`, if it was bootstrapped.
pub fn load_store_ident(engine: &Engine) -> Result<Option<StoreIdent>> {
    Ok(engine.get_msg_cf::<StoreIdent>(CF_DEFAULT, keys::STORE_IDENT_KEY)?)
}

/// Marks `engine` as store `store_id` of cluster `cluster_id`.
///
/// Refuses an engine that already holds data or another identity.
pub fn bootstrap_store(engine: &Engine, cluster_id: u64, store_id: u64) -> Result<()> {
    if let Some(ident) = load_store_ident(engine)? {
        return Err(Error::InvalidRequest(format!(
            "engine already belongs to store {} of cluster {}",
            ident.store_id, ident.cluster_id
        )));
    }
    let mut non_empty = false;
    for cf in [CF_DEFAULT, CF_RAFT] {
        engine.scan_cf(cf, &[], &[], |_, _| {
            non_empty = true;
            Ok(false)
        })?;
    }
    if non_empty {
        return Err(Error::InvalidRequest(
            "cannot bootstrap a store over a non-empty engine".into(),
        ));
    }
    let mut wb = engine.write_batch();
    wb.put_msg_cf(
        CF_DEFAULT,
        keys::STORE_IDENT_KEY,
        &StoreIdent {
            cluster_id,
            store_id,
        },
    )?;
    engine.write(wb, true)?;
    Ok(())
}

/// Writes `region` as a new region of this store: its region state and its
/// initial raft and apply state, in one synced batch.
pub fn write_initial_region(engine: &Engine, region: &metapb::Region) -> Result<()> {
    let region_id = region.id;
    if engine
        .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(region_id))?
        .is_some()
    {
        return Err(Error::InvalidRequest(format!(
            "region {region_id} already exists on this store"
        )));
    }
    let mut wb = engine.write_batch();
    write_region_state(&mut wb, region, PeerState::Normal)?;
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::apply_state_key(region_id),
        &init_apply_state(),
    )?;
    wb.put_msg_cf(
        CF_RAFT,
        &keys::raft_state_key(region_id),
        &init_raft_state(),
    )?;
    engine.write(wb, true)?;
    Ok(())
}

/// The first region of a cluster: the whole key space, version 1, conf
/// version 1, with the given peers.
pub fn new_first_region(region_id: u64, peers: Vec<metapb::Peer>) -> metapb::Region {
    metapb::Region {
        id: region_id,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers,
    }
}
