package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

const narUsage = `nar dump PATH | restore DIR | ls [--json] [FILE] | hash PATH |
           compress ALGO | decompress ALGO

  dump PATH         write the NAR serialisation of PATH to stdout (as nix-store --dump)
  restore DIR       unpack a NAR from stdin into DIR, which must not exist; the NAR
                    is verified strictly first, and nothing is left behind on error
  ls [FILE]         list a NAR (stdin, or FILE) as nix nar ls -lR does; --json
                    prints the .ls listing a binary cache stores
  hash PATH         print the NAR hash of PATH as nix-store -q --hash does
  compress ALGO     compress stdin to stdout as a binary cache stores NARs
                    (ALGO: zstd, xz, none); chunks are compressed in parallel
  decompress ALGO   decompress stdin to stdout (concatenated streams too)`

const narExample = `  nbuild nar dump ./result > result.nar
  nbuild nar ls < result.nar
  nbuild nar restore /tmp/out < result.nar
  nbuild nar hash /nix/store/...-hello-2.12
  nbuild nar dump ./result | nbuild nar compress xz --jobs 2 > result.nar.xz`

func narCommand() command {
	return command{
		name:    "nar",
		summary: "dump, restore, list and hash Nix archives",
		run: func(ctx context.Context, env *cmdEnv, args []string) error {
			fs := newFlagSet(env, "nar", narUsage, narExample)
			jsonOut := fs.Bool("json", false, "ls: print the .ls JSON listing")
			level := fs.Int("level", 0, "compress: level (zstd 1-22, default 3; xz 0-9, default 6)")
			jobs := fs.IntP("jobs", "j", 0, "compress: chunks compressed at once (default: all cores)")
			chunk := fs.Int("chunk-size", 0, "compress: input bytes per independent frame/stream (default: per algorithm)")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if fs.NArg() == 0 {
				return usagef("nar: no subcommand given (see 'nbuild nar --help')")
			}
			sub, rest := fs.Arg(0), fs.Args()[1:]
			one := func() (string, error) {
				if len(rest) != 1 {
					return "", usagef("nar %s takes one argument", sub)
				}
				return rest[0], nil
			}
			switch sub {
			case "dump":
				p, err := one()
				if err != nil {
					return err
				}
				w := bufio.NewWriterSize(env.stdout, 256<<10)
				if err := nar.DumpPath(w, p); err != nil {
					return err
				}
				return w.Flush()
			case "restore":
				dir, err := one()
				if err != nil {
					return err
				}
				return nar.Restore(bufio.NewReaderSize(env.stdin, 256<<10), dir, nar.RestoreOptions{})
			case "hash":
				p, err := one()
				if err != nil {
					return err
				}
				sum, _, err := nar.HashPath(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(env.stdout, "sha256:%s\n", nixbase32.EncodeToString(sum[:]))
				return nil
			case "ls":
				in := env.stdin
				if len(rest) > 1 {
					return usagef("nar ls takes at most one file")
				}
				if len(rest) == 1 {
					f, err := os.Open(rest[0])
					if err != nil {
						return err
					}
					defer f.Close()
					in = f
				}
				return narList(env.stdout, bufio.NewReaderSize(in, 256<<10), *jsonOut)
			case "compress":
				algo, err := one()
				if err != nil {
					return err
				}
				return compress.Compress(env.stdout, env.stdin, algo, compress.Options{
					Level: *level, Concurrency: *jobs, ChunkSize: *chunk, Context: ctx})
			case "decompress":
				algo, err := one()
				if err != nil {
					return err
				}
				return compress.Decompress(env.stdout, env.stdin, algo)
			}
			return usagef("nar: unknown subcommand %q (dump, restore, ls, hash, compress, decompress)", sub)
		},
	}
}

// narList prints a NAR's entries as `nix nar ls -lR ARCHIVE /` does, or
// its .ls JSON listing.
func narList(out io.Writer, in io.Reader, asJSON bool) error {
	if !asJSON {
		return nar.WriteLongListing(out, in)
	}
	l, err := nar.List(in)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	w.Write(l.AppendJSON(nil))
	w.WriteByte('\n')
	return w.Flush()
}
