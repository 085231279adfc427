module github.com/nbuild/nbuild

go 1.25

require (
	github.com/nix-community/go-nix v0.0.0-20250101154619-4bdde671e0a1
	github.com/spf13/pflag v1.1.0
)

require github.com/stretchr/testify v1.11.1 // indirect
