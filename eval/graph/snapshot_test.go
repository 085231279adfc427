package graph_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/store"
)

// sameGraph fails unless a and b hold the same nodes, roots and views.
func sameGraph(t testing.TB, a, b *graph.Graph) {
	t.Helper()
	if a.Len() != b.Len() {
		t.Fatalf("%d nodes, want %d", b.Len(), a.Len())
	}
	for i := range a.Len() {
		id := graph.NodeID(i)
		if !reflect.DeepEqual(a.Node(id), b.Node(id)) {
			t.Fatalf("node %d: %+v, want %+v", i, *b.Node(id), *a.Node(id))
		}
		if !slices.Equal(a.Dependents(id), b.Dependents(id)) || a.Depth(id) != b.Depth(id) {
			t.Fatalf("node %d: dependents or depth differ", i)
		}
	}
	if !slices.Equal(a.Roots(), b.Roots()) {
		t.Errorf("roots %v, want %v", b.Roots(), a.Roots())
	}
	if !reflect.DeepEqual(a.BySystem(), b.BySystem()) || !reflect.DeepEqual(a.ByFeature(), b.ByFeature()) {
		t.Errorf("views differ")
	}
}

func fixtureRoots(t testing.TB) []store.Path {
	var roots []store.Path
	for _, fx := range fixtures(t) {
		roots = append(roots, fx.drv)
	}
	return roots
}

// TestSnapshotRoundTrip encodes the graph of every fixture (and of all of
// them at once) and decodes it back to the same graph.
func TestSnapshotRoundTrip(t *testing.T) {
	sets := [][]store.Path{fixtureRoots(t)}
	for _, fx := range fixtures(t) {
		sets = append(sets, []store.Path{fx.drv})
	}
	for _, roots := range sets {
		g := load(t, storeRoot, roots, graph.Options{})
		data := g.AppendSnapshot(nil)
		h, err := graph.DecodeSnapshot(data, storeRoot)
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, h)
		sameGraph(t, g, h)
		if again := h.AppendSnapshot(nil); !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs")
		}
		if d, err := h.Derivation(h.Roots()[0]); err != nil || d.Platform != h.Node(h.Roots()[0]).System {
			t.Fatalf("Derivation after a snapshot: %v", err)
		}
	}
}

// TestLoadSnapshotDir loads through a snapshot directory: the first load
// reads the .drv files and saves a snapshot, the next (roots in another
// order) reads it, and a damaged snapshot is ignored and replaced.
func TestLoadSnapshotDir(t *testing.T) {
	dir := t.TempDir()
	roots := fixtureRoots(t)
	opts := graph.Options{SnapshotDir: dir}
	cold := load(t, storeRoot, roots, opts)
	if cold.FromSnapshot() {
		t.Fatal("first load came from a snapshot")
	}
	file := filepath.Join(dir, graph.SnapshotFile(storeRoot, roots))
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no snapshot saved: %v", err)
	}
	warm := load(t, storeRoot, roots, opts)
	if !warm.FromSnapshot() {
		t.Fatal("second load did not use the snapshot")
	}
	sameGraph(t, cold, warm)

	rev := slices.Clone(roots)
	slices.Reverse(rev)
	if graph.SnapshotFile(storeRoot, rev) != graph.SnapshotFile(storeRoot, roots) {
		t.Fatal("snapshot name depends on the roots' order")
	}
	g := load(t, storeRoot, rev, opts)
	want := load(t, storeRoot, rev, graph.Options{})
	if !g.FromSnapshot() {
		t.Fatal("reordered roots missed the snapshot")
	}
	sameGraph(t, want, g)

	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	damaged := map[string][]byte{
		"truncated": good[:len(good)/2],
		"empty":     nil,
		"flipped":   append(append([]byte{}, good[:len(good)/3]...), append([]byte{good[len(good)/3] ^ 0x40}, good[len(good)/3+1:]...)...),
	}
	for name, data := range damaged {
		if _, err := graph.DecodeSnapshot(data, storeRoot); !errors.Is(err, graph.ErrSnapshot) {
			t.Errorf("%s: DecodeSnapshot error %v, want ErrSnapshot", name, err)
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		g := load(t, storeRoot, roots, opts)
		if g.FromSnapshot() {
			t.Errorf("%s: a damaged snapshot was used", name)
		}
		sameGraph(t, cold, g)
		if now, _ := os.ReadFile(file); !bytes.Equal(now, good) {
			t.Errorf("%s: the damaged snapshot was not replaced", name)
		}
	}

	// Another store root does not share the snapshot.
	if graph.SnapshotFile("/elsewhere", roots) == graph.SnapshotFile(storeRoot, roots) {
		t.Error("snapshot name ignores the store root")
	}
	// KeepDerivations reads the files.
	if g := load(t, storeRoot, roots, graph.Options{SnapshotDir: dir, KeepDerivations: true}); g.FromSnapshot() {
		t.Error("KeepDerivations used a snapshot")
	}
}

// withCRC appends the checksum DecodeSnapshot expects, so the fuzzer's
// bytes reach the structural checks.
func withCRC(body []byte) []byte {
	c := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	return binary.LittleEndian.AppendUint32(slices.Clone(body), c)
}

// FuzzSnapshot decodes arbitrary snapshot bodies (with a valid checksum):
// never a panic; a graph it returns keeps every promise and encodes back
// to the same bytes.
func FuzzSnapshot(f *testing.F) {
	for _, fx := range fixtures(f)[:4] {
		g, err := graph.Load(context.Background(), storeRoot, []store.Path{fx.drv}, graph.Options{})
		if err != nil {
			f.Fatal(err)
		}
		data := g.AppendSnapshot(nil)
		f.Add(data[:len(data)-4])
	}
	f.Add([]byte("nbuild-graph\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, body []byte) {
		data := withCRC(body)
		g, err := graph.DecodeSnapshot(data, storeRoot)
		if err != nil {
			if !errors.Is(err, graph.ErrSnapshot) {
				t.Fatalf("error %v does not wrap ErrSnapshot", err)
			}
			return
		}
		checkInvariants(t, g)
		h, err := graph.DecodeSnapshot(g.AppendSnapshot(nil), storeRoot)
		if err != nil {
			t.Fatalf("re-encoded snapshot: %v", err)
		}
		sameGraph(t, g, h)
	})
}

// TestSnapshotCoversNode fails when Node gains a field: the snapshot
// encoding (and its version byte) must then learn it.
func TestSnapshotCoversNode(t *testing.T) {
	var fields []string
	typ := reflect.TypeFor[graph.Node]()
	for i := range typ.NumField() {
		fields = append(fields, typ.Field(i).Name)
	}
	want := []string{"Path", "System", "Outputs", "Inputs", "InputSrcs", "RequiredFeatures", "PreferLocalBuild", "AllowSubstitutes", "Kind"}
	if !slices.Equal(fields, want) {
		t.Fatalf("graph.Node has fields %v; the snapshot encodes %v", fields, want)
	}
}
