// Package nixflags parses command lines the way Nix 2.8's legacy commands
// do, for nbuild run under one of their names (a nix-copy-closure symlink)
// to accept, warn about and refuse exactly what Nix would.
//
// Vocabulary (2.8 src/libmain/shared.cc, src/libmain/common-args.cc,
// src/libutil/args.cc, src/libutil/config.cc):
//   - inherited flags: those every legacy command has, from MixCommonArgs
//     and LegacyArgs (-v, --quiet, --option NAME VALUE, --store, -j...),
//     and one per Nix setting (--NAME VALUE, --no-NAME, --extra-NAME),
//     whose values are checked against sched's settings table;
//   - own arguments: what the command's parser receives, everything the
//     inherited flags do not take; nix-copy-closure's accepts any word,
//     and takes the first it does not know as the host;
//   - warnings: lines 2.8 prints on stderr while parsing and goes on
//     (unknown --option names, unimplemented flags); usage errors
//     (*UsageError) stop it, with a pointer to --help.
//
// The parser only reads the command line: it runs nothing, prints nothing
// and leaves --help and --version to the caller.
package nixflags
