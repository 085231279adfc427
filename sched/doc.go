// Package sched decides where and when derivations are built: on the local
// nix-daemon or on remote builders, as Nix 2.8's build hook would allow,
// in an order that finishes the whole plan as early as it can.
//
// Vocabulary:
//
//   - Platform: what a derivation needs from a builder, its system and its
//     required system features; a comparable, normalised value.
//   - Machine: a builder, parsed from Nix's `builders` syntax
//     (ParseMachines) or made for the local daemon from nix.conf
//     (ParseNixConf, LocalMachine). A machine has MaxJobs slots.
//   - CanBuild / Why: Nix 2.8's matching rule, and why nothing matches.
//   - Job: one derivation to build, a node of a DAG the caller defines by
//     dense ids (its index) and dependency ids.
//   - Plan: jobs checked against machines (every job has a capable
//     machine, or Plan refuses and lists them all with reasons), with
//     critical-path priorities.
//   - Scheduler: an event-driven state machine over a Plan. The caller
//     asks it for Assignments (job, machine, slot) to start now, and
//     reports back with Done (finished, failed, or lost because the
//     machine failed) and MachineDown. It holds no goroutines and reads no
//     clock: every call takes the current time. Run drives it with real
//     executors (the Executor interface: Start returns at once and later
//     sends one Result on a channel) and the real clock (tests run it under
//     testing/synctest); Simulate drives the very same Scheduler with
//     virtual time and known durations.
//   - SimCache: simulated timelines kept in a directory, keyed by
//     everything a simulation depends on, so the same plan asked for
//     again is read rather than simulated.
//   - Policy: PolicyCriticalPath (longest remaining path first, on the
//     machine where the job is expected to finish first, counting queueing,
//     speed factor and the bytes of inputs the machine lacks) or PolicyNix
//     (Nix 2.8's discovery order and least load/speedFactor), to compare.
//   - Transfers: a remote build's outputs stay on its machine; a later
//     job on another machine (the local one included) pays for fetching
//     them to the coordinating host and, if remote, sending them on;
//     one on the same machine pays nothing. sched/executor does the
//     same (its Held). Under PolicyNix every output is copied back at
//     once, as Nix's build hook does; otherwise only the outputs of jobs
//     nothing depends on (roots) come back at once.
//   - Retries: a build failure is final (KeepGoing skips only its
//     dependents); a lost machine (MachineLost, MachineDown) is down for an
//     exponential back-off, and its jobs go elsewhere or wait for it.
//     Outputs lost with a machine that was their only holder are built
//     again (InputsLost, Redo), at most twice per consumer.
//   - Estimator: expected build durations, learned per package name.
//   - Timeline: what ran where and when, as JSON or an SVG Gantt chart.
package sched
