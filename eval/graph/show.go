package graph

import (
	"context"
	"io"
	"runtime"
	"sort"
	"strings"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
	"golang.org/x/sync/errgroup"
)

// LoadWithDrvSources is Load of the .drv files `nix-store -qR` lists for
// roots (and `nix show-derivation -r` shows): besides input derivations,
// input sources that are .drv files (a derivation's path used as a plain
// string, as builtins.unsafeDiscardOutputDependency gives it) and their
// closures. Such sources are loaded as extra roots, after the given ones
// in Roots. Sources that are not .drv files are not followed: their
// references are not in the .drv files.
func LoadWithDrvSources(ctx context.Context, storeRoot string, roots []store.Path, opts Options) (*Graph, error) {
	for {
		g, err := Load(ctx, storeRoot, roots, opts)
		if err != nil {
			return nil, err
		}
		var extra []store.Path
		seen := map[store.Path]bool{}
		for i := range g.nodes {
			for _, s := range g.nodes[i].InputSrcs {
				if !strings.HasSuffix(s.Name(), ".drv") || seen[s] {
					continue
				}
				seen[s] = true
				if _, ok := g.Lookup(s); !ok {
					extra = append(extra, s)
				}
			}
		}
		if len(extra) == 0 {
			return g, nil
		}
		store.SortPaths(extra)
		roots = append(append([]store.Path(nil), roots...), extra...)
	}
}

// showChunk is how many derivations one rendering job takes: about 200 KB
// of JSON for a nixpkgs closure.
const showChunk = 64

// WriteShow writes every derivation of g as `nix show-derivation -r` of
// Nix 2.8 prints them (see drv.ShowJSON), streamed to w: chunks of
// derivations, in path order, are rendered by up to GOMAXPROCS goroutines
// and written in order, so at most a few chunks of output are held at a
// time. g should be loaded with Options.KeepDerivations; otherwise each
// derivation is read again. WriteShow returns the first error of a
// derivation or of w, or ctx.Err(), and leaves no goroutine behind.
func WriteShow(ctx context.Context, w io.Writer, g *Graph) error {
	type entry struct {
		path string
		id   NodeID
	}
	entries := make([]entry, len(g.nodes))
	for i := range entries {
		entries[i] = entry{g.nodes[i].Path.String(), NodeID(i)}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })

	workers := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	eg, ctx := errgroup.WithContext(ctx)
	// The queue of results is filled in input order before each job
	// starts; its capacity bounds the chunks in flight, and their buffers
	// are reused.
	results := make(chan chan []byte, workers)
	free := make(chan []byte, workers+2)
	eg.Go(func() error {
		defer close(results)
		for start := 0; start < len(entries); start += showChunk {
			chunk := entries[start:min(start+showChunk, len(entries))]
			res := make(chan []byte, 1)
			select {
			case results <- res:
			case <-ctx.Done():
				return ctx.Err()
			}
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			first := start == 0
			eg.Go(func() error {
				buf := buf[:0]
				if first {
					buf = append(buf, '{')
				}
				for i, e := range chunk {
					d, err := g.Derivation(e.id)
					if err != nil {
						return err
					}
					if i > 0 || !first {
						buf = append(buf, ',')
					}
					if buf, err = drv.AppendShowEntry(buf, e.path, d); err != nil {
						return err
					}
				}
				res <- buf // buffered: never blocks
				return nil
			})
		}
		return nil
	})
	werr := func() error {
		for res := range results {
			select {
			case buf := <-res:
				if _, err := w.Write(buf); err != nil {
					return err
				}
				select {
				case free <- buf:
				default:
				}
			case <-ctx.Done():
				return ctx.Err() // a failed job's error comes first, from Wait
			}
		}
		// The end of ShowJSON's object.
		end := "\n}\n"
		if len(entries) == 0 {
			end = "{}\n"
		}
		_, err := io.WriteString(w, end)
		return err
	}()
	if werr != nil {
		cancel()
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	return werr
}
