//! The scheduler's scheduling glue: operators' lifecycle (deadlines,
//! validation, steps), the [`ClusterView`] the checkers read, and the
//! periodic pass. The decisions themselves live in `schedule`.
//!
//! Operator lifecycle, for one region (at most one operator at a time):
//!
//! ```text
//!  plan (checker/balancer) ──to operator (new peer id)──▶ validate ──▶ installed, deadline set
//!  installed ──heartbeat──▶ next step in the answer ──▶ … ──▶ finished: dropped
//!            ├─ deadline passed (heartbeat or periodic pass): dropped, logged
//!            ├─ step impossible (`OperatorStep::Cancel`; also when the leader
//!            │  reports the peer to add or make leader down): dropped, logged
//!            └─ region replaced by a newer overlapping one: dropped with it
//! ```
//!
//! So a bad operator never freezes a region: at worst it lives until its
//! deadline, then the checkers are free to plan again.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use kvproto::metapb::{Peer, StoreState};
use kvproto::schedulerpb::RegionHeartbeatResponse;
use slog::{Logger, debug, error, info, warn};

use super::{ClusterState, MemoryScheduler, ScheduledOperator, operator_timeout};
use crate::errors::{Error, Result};
use crate::operator::{Operator, OperatorStep};
use crate::schedule::{
    ClusterView, Plan, PlanSource, RegionView, ScheduleConfig, StoreView, balance_leader,
    balance_region, region_size_units, replica_checker,
};

impl ClusterState {
    /// The stores and regions as scheduling sees them at `now`.
    fn view(&self, now: Instant) -> ClusterView {
        let max_down = self.schedule.max_store_down_time;
        let stores = self
            .stores
            .values()
            .filter(|r| r.meta.state() != StoreState::Tombstone)
            .map(|r| StoreView {
                id: r.meta.id,
                is_up: r.meta.state() == StoreState::Up,
                is_down: r.liveness.is_down(now, max_down),
                region_count: 0,
                region_size: 0,
                leader_count: 0,
            })
            .collect();
        let regions = self
            .regions
            .iter()
            .map(|region| self.region_view(region.id))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        let max_replicas =
            usize::try_from(self.cluster_config.max_peer_count).unwrap_or(usize::MAX);
        let mut view = ClusterView::new(stores, regions, max_replicas);
        // Operators under way count as done, so the balancers do not pile
        // more moves onto a store that is already receiving some.
        for (region_id, scheduled) in &self.operators {
            let size = view.regions.get(region_id).map_or(1, |r| r.size);
            match &scheduled.operator {
                Operator::MovePeer { from, to } => {
                    view.add_influence(from.store_id, to.store_id, size);
                }
                Operator::AddPeer(peer) => view.add_influence(0, peer.store_id, size),
                Operator::RemovePeer(peer) => view.add_influence(peer.store_id, 0, size),
                Operator::TransferLeader(peer) => {
                    if let Some(leader) = self.reports.get(region_id).map(|r| r.leader) {
                        view.add_leader_influence(leader.store_id, peer.store_id);
                    }
                }
            }
        }
        view
    }

    /// One region as scheduling sees it (`None` if not in the map).
    fn region_view(&self, region_id: u64) -> Option<RegionView> {
        let region = self.regions.get(region_id)?;
        let report = self.reports.get(&region_id);
        Some(RegionView {
            region: region.clone(),
            leader: report.map(|r| r.leader),
            pending: report.map(|r| r.pending.clone()).unwrap_or_default(),
            down: report.map(|r| r.down.clone()).unwrap_or_default(),
            size: region_size_units(report.map_or(0, |r| r.approximate_size)),
            has_operator: self.operators.contains_key(&region_id),
        })
    }

    /// Whether the replica checker could have work for the region: a cheap
    /// test before building a whole view.
    fn may_need_replica_work(&self, region_id: u64, now: Instant) -> bool {
        let (Some(region), Some(report)) =
            (self.regions.get(region_id), self.reports.get(&region_id))
        else {
            return false;
        };
        let max = usize::try_from(self.cluster_config.max_peer_count).unwrap_or(usize::MAX);
        region.peers.len() != max
            || !report.down.is_empty()
            || region.peers.iter().any(|p| {
                self.stores.get(&p.store_id).is_none_or(|s| {
                    s.meta.state() != StoreState::Up
                        || s.liveness.is_down(now, self.schedule.max_store_down_time)
                })
            })
    }

    /// Whether a new peer may go to `store_id` at `now`, and why not.
    fn check_target_store(&self, store_id: u64, now: Instant) -> std::result::Result<(), String> {
        let Some(store) = self.stores.get(&store_id) else {
            return Err("unknown store".to_owned());
        };
        if store.meta.state() != StoreState::Up {
            return Err(format!("store is {:?}", store.meta.state()));
        }
        if store
            .liveness
            .is_down(now, self.schedule.max_store_down_time)
        {
            return Err(format!(
                "store is down (silent for {:?})",
                store.liveness.silent_for(now)
            ));
        }
        Ok(())
    }
}

impl MemoryScheduler {
    /// Turns scheduling on or off, or changes its settings, from now on.
    /// (A builder form for start-up is [`with_schedule_config`](Self::with_schedule_config).)
    pub fn set_schedule_config(&self, config: ScheduleConfig) {
        info!(self.logger, "schedule config"; "config" => ?config);
        self.write().schedule = config;
    }

    /// The scheduler with these scheduling settings (constructors start with
    /// scheduling off).
    pub fn with_schedule_config(self, config: ScheduleConfig) -> Self {
        self.set_schedule_config(config);
        self
    }

    /// The scheduling settings in force.
    pub fn schedule_config(&self) -> ScheduleConfig {
        self.read().schedule.clone()
    }

    /// Schedules `operator` for region `region_id` after validating it
    /// against the region as last reported: refused if the region is unknown
    /// or has no leader report yet, already has an operator, or the operator
    /// fails [`Operator::validate`]. Works whether or not scheduling is on.
    pub fn schedule_operator(&self, region_id: u64, operator: Operator) -> Result<()> {
        let now = self.now();
        let mut state = self.write();
        state.check_bootstrapped()?;
        self.install(&mut state, region_id, operator, "api", now)
    }

    /// Validates and installs an operator (under the state lock).
    fn install(
        &self,
        state: &mut ClusterState,
        region_id: u64,
        operator: Operator,
        source: &'static str,
        now: Instant,
    ) -> Result<()> {
        let refused = |reason: String| {
            debug!(self.logger, "operator refused"; "region_id" => region_id,
                "operator" => ?operator, "reason" => &reason);
            Error::OperatorRefused { region_id, reason }
        };
        let region = state
            .regions
            .get(region_id)
            .ok_or(Error::RegionNotFound(region_id))?;
        let Some(report) = state.reports.get(&region_id) else {
            return Err(refused("no leader has reported the region yet".to_owned()));
        };
        if let Some(current) = state.operators.get(&region_id) {
            return Err(refused(format!(
                "operator {:?} is under way",
                current.operator
            )));
        }
        operator
            .validate(region, Some(&report.leader), &report.pending, |store_id| {
                state.check_target_store(store_id, now)
            })
            .map_err(refused)?;
        info!(self.logger, "schedule operator"; "region_id" => region_id,
            "operator" => ?operator, "source" => source);
        let deadline = now + operator_timeout(&state.schedule, &operator);
        state.operators.insert(
            region_id,
            ScheduledOperator {
                operator,
                deadline,
                source,
            },
        );
        Ok(())
    }

    /// Makes an operator from a plan: new peers get fresh ids.
    fn operator_from_plan(&self, state: &mut ClusterState, plan: Plan) -> Result<Operator> {
        Ok(match plan {
            Plan::AddPeer { store_id } => Operator::AddPeer(Peer {
                id: self.alloc_id_locked(state)?,
                store_id,
            }),
            Plan::MovePeer { from, to_store } => Operator::MovePeer {
                from,
                to: Peer {
                    id: self.alloc_id_locked(state)?,
                    store_id: to_store,
                },
            },
            Plan::RemovePeer(peer) => Operator::RemovePeer(peer),
            Plan::TransferLeader(peer) => Operator::TransferLeader(peer),
        })
    }

    /// One fresh id, under the state lock (reserving a batch durably first
    /// if needed).
    fn alloc_id_locked(&self, state: &mut ClusterState) -> Result<u64> {
        let (ids, range) = state.ids.plan_alloc(1)?;
        if ids.end() != state.ids.end() {
            self.persist(state, |p| p.id_end = ids.end())?;
        }
        state.ids = ids;
        Ok(range.start)
    }

    /// Turns a plan into a validated, installed operator; logs and returns
    /// whether it was installed.
    fn install_plan(
        &self,
        state: &mut ClusterState,
        region_id: u64,
        plan: Plan,
        source: PlanSource,
        now: Instant,
    ) -> bool {
        let name = match source {
            PlanSource::ReplicaChecker => "replica-checker",
            PlanSource::BalanceRegion => "balance-region",
            PlanSource::BalanceLeader => "balance-leader",
        };
        let result = self
            .operator_from_plan(state, plan)
            .and_then(|op| self.install(state, region_id, op, name, now));
        match result {
            Ok(()) => true,
            Err(e) => {
                warn!(self.logger, "planned operator not scheduled"; "region_id" => region_id,
                    "source" => name, "err" => %e);
                false
            }
        }
    }

    /// Step 4 of a heartbeat: the region's operator, after its leader report
    /// was recorded. Drops an operator past its deadline, done or
    /// impossible; otherwise puts its next step into `response`. With
    /// scheduling on and no operator (left), runs the replica checker on the
    /// region and hands out the first step of what it plans at once.
    pub(super) fn step_operator(
        &self,
        state: &mut ClusterState,
        region_id: u64,
        now: Instant,
        response: &mut RegionHeartbeatResponse,
    ) {
        if let Some(scheduled) = state.operators.get(&region_id)
            && now > scheduled.deadline
        {
            warn!(self.logger, "operator timed out, dropped"; "region_id" => region_id,
                "operator" => ?scheduled.operator, "source" => scheduled.source);
            state.operators.remove(&region_id);
        }
        if self.step_existing(state, region_id, response) {
            return;
        }
        if state.schedule.enabled && state.may_need_replica_work(region_id, now) {
            let view = state.view(now);
            if let Some(plan) = view
                .regions
                .get(&region_id)
                .and_then(|region| replica_checker::check(&view, region))
                && self.install_plan(state, region_id, plan, PlanSource::ReplicaChecker, now)
            {
                self.step_existing(state, region_id, response);
            }
        }
    }

    /// Asks the region's operator, if any, for its next step and puts it
    /// into `response`; drops the operator if done or impossible. Returns
    /// whether an operator remains.
    fn step_existing(
        &self,
        state: &mut ClusterState,
        region_id: u64,
        response: &mut RegionHeartbeatResponse,
    ) -> bool {
        let (Some(scheduled), Some(region), Some(report)) = (
            state.operators.get(&region_id),
            state.regions.get(region_id),
            state.reports.get(&region_id),
        ) else {
            return state.operators.contains_key(&region_id);
        };
        let mut step = scheduled
            .operator
            .next_step(region, &report.leader, &report.pending);
        // A peer its leader reports down cannot catch up or take over: the
        // operator would only wait for its deadline, holding off the
        // replica checker, which replaces that peer once this one is gone.
        if !matches!(step, OperatorStep::Finished | OperatorStep::Cancel(_))
            && let Some(target) = scheduled.operator.target()
            && report.down.iter().any(|p| p.id == target.id)
        {
            step = OperatorStep::Cancel("the leader reports the operator's target peer down");
        }
        match step {
            OperatorStep::Finished => {
                info!(self.logger, "operator finished"; "region_id" => region_id,
                    "operator" => ?scheduled.operator, "source" => scheduled.source);
                state.operators.remove(&region_id);
                false
            }
            OperatorStep::Cancel(reason) => {
                warn!(self.logger, "operator cannot go on, dropped"; "region_id" => region_id,
                    "operator" => ?scheduled.operator, "reason" => reason);
                state.operators.remove(&region_id);
                false
            }
            OperatorStep::Wait => true,
            OperatorStep::ChangePeer(change) => {
                response.change_peer = Some(change);
                true
            }
            OperatorStep::TransferLeader(transfer) => {
                response.transfer_leader = Some(transfer);
                true
            }
        }
    }

    /// The periodic pass: drops operators past their deadline, runs the
    /// replica checker over every region without an operator, then
    /// balance-leader and balance-region once each. The operators go out
    /// with the regions' next heartbeats. Does nothing while scheduling is
    /// off. Returns how many operators it scheduled.
    pub fn run_schedule_pass(&self) -> usize {
        let now = self.now();
        let mut state = self.write();
        if !state.schedule.enabled || !state.bootstrapped {
            return 0;
        }
        let expired: Vec<u64> = state
            .operators
            .iter()
            .filter(|(_, s)| now > s.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(s) = state.operators.remove(&id) {
                warn!(self.logger, "operator timed out, dropped"; "region_id" => id,
                    "operator" => ?s.operator, "source" => s.source);
            }
        }

        let mut scheduled = 0;
        let mut view = state.view(now);
        let region_ids: Vec<u64> = view.regions.keys().copied().collect();
        for region_id in region_ids {
            let Some(region) = view.regions.get(&region_id) else {
                continue;
            };
            if region.has_operator {
                continue;
            }
            let Some(plan) = replica_checker::check(&view, region) else {
                continue;
            };
            if self.install_plan(&mut state, region_id, plan, PlanSource::ReplicaChecker, now) {
                scheduled += 1;
                // Later regions' targets see this one's new peer.
                view = state.view(now);
            }
        }

        let config = state.schedule.clone();
        if let Some(plan) = balance_leader::schedule(&view, config.leader_tolerance)
            && let Some(region_id) = region_of_plan(&view, &plan)
            && self.install_plan(&mut state, region_id, plan, PlanSource::BalanceLeader, now)
        {
            scheduled += 1;
            view = state.view(now);
        }
        if let Some(plan) = balance_region::schedule(&view, config.region_tolerance_factor)
            && let Some(region_id) = region_of_plan(&view, &plan)
            && self.install_plan(&mut state, region_id, plan, PlanSource::BalanceRegion, now)
        {
            scheduled += 1;
        }
        if scheduled > 0 {
            debug!(self.logger, "schedule pass"; "operators" => scheduled);
        }
        scheduled
    }

    /// Starts a thread that runs [`run_schedule_pass`](Self::run_schedule_pass)
    /// every `balance_interval` (read afresh each time, so
    /// [`set_schedule_config`](Self::set_schedule_config) applies) until the
    /// returned handle is dropped or the scheduler is. A pass that panics (a
    /// bug) is logged and the loop goes on.
    pub fn start_schedule_loop(self: &Arc<Self>) -> ScheduleLoop {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let weak = Arc::downgrade(self);
        let logger = self.logger.clone();
        let thread = std::thread::Builder::new()
            .name("schedule-loop".to_owned())
            .spawn(move || schedule_loop(&weak, &stop_rx, &logger));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                error!(self.logger, "cannot start the schedule loop, no periodic scheduling"; "err" => %e);
                None
            }
        };
        ScheduleLoop {
            stop: Some(stop_tx),
            thread,
        }
    }
}

/// The region a balancer's plan is about.
fn region_of_plan(view: &ClusterView, plan: &Plan) -> Option<u64> {
    let peer = match plan {
        Plan::MovePeer { from, .. } => from,
        Plan::RemovePeer(p) | Plan::TransferLeader(p) => p,
        Plan::AddPeer { .. } => return None,
    };
    view.regions
        .values()
        .find(|r| r.region.peers.iter().any(|p| p.id == peer.id))
        .map(|r| r.region.id)
}

fn schedule_loop(scheduler: &Weak<MemoryScheduler>, stop: &mpsc::Receiver<()>, logger: &Logger) {
    loop {
        let Some(interval) = scheduler
            .upgrade()
            .map(|s| s.schedule_config().balance_interval)
        else {
            return;
        };
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(scheduler) = scheduler.upgrade() else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| scheduler.run_schedule_pass())).is_err() {
            error!(
                logger,
                "schedule pass panicked; the next pass runs as usual"
            );
        }
    }
}

/// The periodic scheduling thread of
/// [`MemoryScheduler::start_schedule_loop`]; stops it (and waits for it) when
/// dropped.
#[derive(Debug)]
pub struct ScheduleLoop {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ScheduleLoop {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[path = "memory_schedule_tests.rs"]
mod tests;
