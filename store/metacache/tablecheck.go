package metacache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/y"
	"google.golang.org/protobuf/proto"
)

// checkTables verifies the footer, index and block checksums of every
// table (.sst) file in dir before badger opens them. Badger opens tables
// in background goroutines and panics there on a damaged file, which no
// recover can catch; this check turns such damage into an error so Open
// can move the directory aside instead of crashing the process.
//
// It mirrors badger v4's table layout (table/table.go initIndex and
// block): uncompressed, unencrypted tables only, which is how openDB
// configures badger.
func checkTables(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return err
	}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		if err := checkTable(data); err != nil {
			return fmt.Errorf("table %s: %w", filepath.Base(name), err)
		}
	}
	return nil
}

var errTable = errors.New("damaged table")

func checkTable(data []byte) (err error) {
	defer func() {
		if recover() != nil { // flatbuffers accessors on a colliding checksum
			err = errTable
		}
	}()
	index, ok := splitChecked(data)
	if !ok {
		return fmt.Errorf("%w: bad footer or index checksum", errTable)
	}
	ti := fb.GetRootAsTableIndex(index, 0)
	var bo fb.BlockOffset
	n := ti.OffsetsLength()
	if n == 0 {
		return fmt.Errorf("%w: no blocks", errTable)
	}
	for i := range n {
		if !ti.Offsets(&bo, i) {
			return fmt.Errorf("%w: block %d: no offset", errTable, i)
		}
		off, size := uint64(bo.Offset()), uint64(bo.Len())
		if off+size > uint64(len(data)) {
			return fmt.Errorf("%w: block %d out of bounds", errTable, i)
		}
		if err := checkBlock(data[off : off+size]); err != nil {
			return fmt.Errorf("%w: block %d: %v", errTable, i, err)
		}
	}
	return nil
}

// splitChecked parses the table footer
//
//	… index | indexLen u32 | checksum | checksumLen u32
//
// and verifies the index checksum.
func splitChecked(data []byte) (index []byte, ok bool) {
	end := len(data)
	if end < 8 {
		return nil, false
	}
	chkLen := int(binary.BigEndian.Uint32(data[end-4:]))
	if chkLen > end-8 {
		return nil, false
	}
	chk := data[end-4-chkLen : end-4]
	pos := end - 8 - chkLen
	indexLen := int(binary.BigEndian.Uint32(data[pos : pos+4]))
	if indexLen > pos {
		return nil, false
	}
	index = data[pos-indexLen : pos]
	if verifyChecksum(index, chk) != nil {
		return nil, false
	}
	return index, true
}

// checkBlock verifies one block:
//
//	entries | entry offsets u32… | numEntries u32 | checksum | checksumLen u32
//
// where the checksum covers everything up to and including numEntries.
func checkBlock(b []byte) error {
	end := len(b)
	if end < 8 {
		return errors.New("too short")
	}
	chkLen := int(binary.BigEndian.Uint32(b[end-4:]))
	if chkLen > end-8 {
		return errors.New("bad checksum length")
	}
	chk := b[end-4-chkLen : end-4]
	pos := end - 8 - chkLen
	numEntries := uint64(binary.BigEndian.Uint32(b[pos : pos+4]))
	if numEntries*4 > uint64(pos) {
		return errors.New("bad entry count")
	}
	return verifyChecksum(b[:pos+4], chk)
}

func verifyChecksum(data, encoded []byte) error {
	var want pb.Checksum
	if err := proto.Unmarshal(encoded, &want); err != nil {
		return err
	}
	switch want.Algo {
	case pb.Checksum_CRC32C, pb.Checksum_XXHash64: // y.CalculateChecksum panics on others
	default:
		return errors.New("unknown checksum algorithm")
	}
	return y.VerifyChecksum(data, &want)
}
