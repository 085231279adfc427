package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
)

// TestPruneSnapshots keeps the newest snapshots and nothing else is touched.
func TestPruneSnapshots(t *testing.T) {
	dir := t.TempDir()
	base := time.Now()
	for i := range 5 {
		f := filepath.Join(dir, fmt.Sprintf("%d.graph", i))
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(f, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pruneSnapshots(dir, 3)
	for i, want := range []bool{false, false, true, true, true} {
		_, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%d.graph", i)))
		if (err == nil) != want {
			t.Errorf("%d.graph kept = %v, want %v", i, err == nil, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err != nil {
		t.Error("a file that is not a snapshot was removed")
	}
}

// TestSnapshotDuplicateNode: a snapshot naming one path for two nodes is
// rejected, naming the second.
func TestSnapshotDuplicateNode(t *testing.T) {
	a := mustPath(t, "/nix/store/1b8m03r63zqhnjf7l5wnldhh7c134ap5-a.drv")
	g := &Graph{nodes: []Node{
		{Path: a, System: "x86_64-linux", Kind: drv.InputAddressed, Outputs: []Output{}, Inputs: []Edge{}},
		{Path: a, System: "x86_64-linux", Kind: drv.InputAddressed, Outputs: []Output{}, Inputs: []Edge{}},
	}, roots: []NodeID{1}}
	_, err := DecodeSnapshot(g.AppendSnapshot(nil), "")
	if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), "node 1 repeats "+a.String()) {
		t.Fatalf("got %v, want ErrSnapshot naming node 1", err)
	}
}

func mustPath(t *testing.T, s string) store.Path {
	t.Helper()
	p, err := store.ParsePath(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSnapshotChunks decodes a snapshot cut into chunks of 1 to 4 nodes
// (the default is thousands) into the same graph, and rejects one whose
// checkpoints or chunk ends do not agree with its nodes.
func TestSnapshotChunks(t *testing.T) {
	src := mustPath(t, "/nix/store/5yrr0dwl3dqjn4vmdb0wqbzzmrb4rh0z-builder.sh")
	var nodes []Node
	for i := range 7 {
		p := mustPath(t, fmt.Sprintf("/nix/store/%032d-n%d.drv", i, i))
		out := mustPath(t, fmt.Sprintf("/nix/store/%032d-n%d", i+10, i))
		n := Node{Path: p, System: "x86_64-linux", Kind: drv.InputAddressed, AllowSubstitutes: true,
			Outputs: []Output{{Name: "out", Path: out}}, Inputs: []Edge{}}
		for j := range i {
			if j%2 == i%2 || j == i-1 {
				n.Inputs = append(n.Inputs, Edge{To: NodeID(j), Outputs: []string{"out"}})
			}
		}
		if i%3 == 0 {
			n.InputSrcs = []store.Path{src}
		}
		if i == 4 {
			n.RequiredFeatures = []string{"big-parallel", "kvm"}
		}
		nodes = append(nodes, n)
	}
	g := &Graph{nodes: nodes, roots: []NodeID{6, 5}}
	for chunk := 1; chunk <= 8; chunk++ {
		data := g.appendSnapshot(nil, chunk)
		h, err := DecodeSnapshot(data, "")
		if err != nil {
			t.Fatalf("chunks of %d: %v", chunk, err)
		}
		if !reflect.DeepEqual(h.nodes, g.nodes) || !reflect.DeepEqual(h.roots, g.roots) {
			t.Fatalf("chunks of %d: decoded graph differs", chunk)
		}
	}
	// The checkpoints follow the 8 header counts; in chunks of 3 the
	// first is node 3. Moving it to node 2 or 4 (with its offset and
	// counts unchanged) must fail, as must a chunk boundary off by a byte.
	data := g.appendSnapshot(nil, 3)
	hdr := len(snapshotMagic)
	for range 8 {
		for data[hdr]&0x80 != 0 {
			hdr++
		}
		hdr++
	}
	if data[hdr] != 3 {
		t.Fatalf("first checkpoint at node %d, want 3", data[hdr])
	}
	for _, edit := range []struct {
		at   int
		to   byte
		what string
	}{{hdr, 2, "node 2"}, {hdr, 4, "node 4"}, {hdr + 1, data[hdr+1] - 1, "offset - 1"}, {hdr + 1, data[hdr+1] + 1, "offset + 1"}} {
		bad := slices.Clone(data[:len(data)-4])
		bad[edit.at] = edit.to
		bad = binary.LittleEndian.AppendUint32(bad, crc32.Checksum(bad, castagnoli()))
		if _, err := DecodeSnapshot(bad, ""); !errors.Is(err, ErrSnapshot) {
			t.Errorf("checkpoint moved to %s: %v, want ErrSnapshot", edit.what, err)
		}
	}
}
