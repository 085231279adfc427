package compress

// SetLinkEvidence lowers how many bytes Options.Adaptive writes before it
// trusts the writer's speed, so tests need not write 16 MiB; it returns
// the function restoring it.
func SetLinkEvidence(n int64) (restore func()) {
	old := linkEvidence
	linkEvidence = n
	return func() { linkEvidence = old }
}
