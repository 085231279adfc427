// Package plan is the build plan of a closure: for every derivation of a
// loaded graph, what happens to it and where, as `nbuild graph` shows it
// and `nbuild build` runs it.
//
// Vocabulary:
//
//   - Validity: what the store says about the closure's outputs: valid
//     (present), substitutable (a substituter has them), their NAR sizes,
//     and why substitutes are unknown when the substituters did not
//     answer. QueryValidity asks a chroot store's files or the machine's
//     nix-daemon, with answers about substitutes remembered in the
//     metadata cache.
//   - State: what the plan does with a derivation: Valid (every output
//     exists), Substitutable (the missing outputs can be fetched), Build,
//     Unneeded (only an input of valid or substitutable derivations),
//     Unbuildable (to build, but no builder can), Blocked (to build, but
//     it needs an unbuildable one). Derivations are needed from the roots
//     down, as Nix's queryMissing decides.
//   - Builder and BuilderReason: the machine (index into Plan.Machines,
//     the local machine first) a derivation to build is assigned to by
//     simulating the critical-path scheduler with expected durations, and
//     why that one: the only builder with its system or features, a
//     mandatory feature, preferLocalBuild, or the earliest expected finish.
//   - Unbuildable groups: the derivations no builder can take, grouped by
//     cause (a system no builder has, a feature none supports), each with
//     a hint that would fix it.
//   - Expected duration: learned from earlier builds (Options.Duration),
//     else TrivialDuration for what Nix builds trivially, else
//     Options.DefaultDuration. The critical path is the longest chain of
//     derivations to build by expected duration; the estimate is the
//     simulated makespan on the machines.
//   - Writers: WriteSummary, WriteTree and WriteDot (node for node what
//     nix-store -q --tree and --graph print, annotated), WriteJSON (the
//     JSONPlan schema) and WriteUnbuildable, each to an io.Writer.
package plan
