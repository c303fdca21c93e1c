package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"google.golang.org/protobuf/proto"

	"github.com/spiagent/spiagent/gen"
)

// Files of a data directory.
const (
	snapshotName = "running.json"
	journalName  = "journal.log"
	snapFormat   = "spiagent-store/1"
)

// journalMagic starts the journal; the base snapshot id follows (8 bytes, big
// endian). Each record is: length (4 bytes BE), CRC-32C of the payload (4
// bytes BE), payload (JSON of journalRec).
var journalMagic = []byte("SPIJRNL1")

const journalHeaderLen = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapFile is the envelope of the snapshot file.
type snapFile struct {
	Format  string          `json:"format"`
	ID      uint64          `json:"id"`
	Time    time.Time       `json:"time"`
	History []CommitInfo    `json:"history"`
	SHA256  string          `json:"sha256"`
	Config  json.RawMessage `json:"config"`
}

// journalRec is one committed transaction.
type journalRec struct {
	CommitInfo
	Ops []journalOp `json:"ops"`
}

type journalOp struct {
	Kind OpKind `json:"kind"`
	Path []byte `json:"path"`          // gnmi.Path, protobuf
	Val  []byte `json:"val,omitempty"` // gnmi.TypedValue, protobuf
}

func encodeRecord(info CommitInfo, ops []Op) ([]byte, error) {
	rec := journalRec{CommitInfo: info, Ops: make([]journalOp, len(ops))}
	for i, op := range ops {
		p, err := proto.Marshal(op.Path)
		if err != nil {
			return nil, err
		}
		rec.Ops[i] = journalOp{Kind: op.Kind, Path: p}
		if op.Kind != OpDelete && op.Val != nil {
			if rec.Ops[i].Val, err = proto.Marshal(op.Val); err != nil {
				return nil, err
			}
		}
	}
	payload, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(payload, castagnoli))
	copy(b[8:], payload)
	return b, nil
}

func decodeRecord(payload []byte) (CommitInfo, []Op, error) {
	var rec journalRec
	if err := json.Unmarshal(payload, &rec); err != nil {
		return CommitInfo{}, nil, err
	}
	ops := make([]Op, len(rec.Ops))
	for i, jo := range rec.Ops {
		ops[i] = Op{Kind: jo.Kind, Path: &gpb.Path{}}
		if err := proto.Unmarshal(jo.Path, ops[i].Path); err != nil {
			return CommitInfo{}, nil, err
		}
		if jo.Val != nil {
			ops[i].Val = &gpb.TypedValue{}
			if err := proto.Unmarshal(jo.Val, ops[i].Val); err != nil {
				return CommitInfo{}, nil, err
			}
		}
	}
	return rec.CommitInfo, ops, nil
}

// writeFileAtomic writes data to dir/name through a temporary file in dir:
// write, fsync, rename, fsync of the directory. Mode 0600.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := writeTemp(dir, name, data)
	if err != nil {
		return err
	}
	return installTemp(dir, name, tmp)
}

// writeTemp writes data to a new temporary file next to dir/name and fsyncs
// it; installTemp then renames it into place.
func writeTemp(dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// installTemp renames tmp to dir/name and fsyncs the directory.
func installTemp(dir, name, tmp string) error {
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func encodeSnapshot(s *Snapshot, history []CommitInfo) ([]byte, error) {
	cfg, err := emitJSON(s.Root, true, "")
	if err != nil {
		return nil, err
	}
	sum := configSum(cfg)
	b, err := json.Marshal(&snapFile{
		Format: snapFormat, ID: s.ID, Time: s.Time, History: history,
		SHA256: sum, Config: cfg,
	})
	return append(b, '\n'), err
}

// configSum is the SHA-256 of the config's compact form (so that re-indenting
// the file, say by hand with jq, does not make it corrupt).
func configSum(cfg []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, cfg); err != nil {
		return ""
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:])
}

// readSnapshot reads and checks the snapshot file.
func readSnapshot(path string) (*snapFile, *gen.Device, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var sf snapFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return nil, nil, fmt.Errorf("not a valid data file (truncated or corrupt?): %v", err)
	}
	if sf.Format != snapFormat {
		return nil, nil, fmt.Errorf("unknown format %q (want %q)", sf.Format, snapFormat)
	}
	if configSum(sf.Config) != sf.SHA256 {
		return nil, nil, errors.New("checksum mismatch: the config in the file is corrupt")
	}
	root, err := LoadJSON(sf.Config)
	if err != nil {
		return nil, nil, err
	}
	return &sf, root, nil
}

// journalEntry is a decoded journal record.
type journalEntry struct {
	info CommitInfo
	ops  []Op
	raw  []byte // the encoded record, header included
}

// journalScan is what reading a journal found.
type journalScan struct {
	base    uint64
	entries []journalEntry
	good    int64 // length of the well-formed prefix
	torn    int64 // bytes of a torn final record (0 if none)
}

// readJournal parses a journal. A final record cut short (or whose checksum
// fails and which ends exactly at the end of the file: a write that never
// completed, so never acknowledged) is reported as torn; a bad record followed
// by more data is corruption.
func readJournal(b []byte) (*journalScan, error) {
	if len(b) < journalHeaderLen || !bytes.Equal(b[:8], journalMagic) {
		return nil, errors.New("bad journal header")
	}
	js := &journalScan{base: binary.BigEndian.Uint64(b[8:16]), good: journalHeaderLen}
	off := journalHeaderLen
	for off < len(b) {
		rest := b[off:]
		if len(rest) < 8 {
			js.torn = int64(len(rest))
			break
		}
		n := int(binary.BigEndian.Uint32(rest))
		if 8+n > len(rest) {
			if n > 64<<20 {
				return nil, fmt.Errorf("journal record at offset %d: impossible length %d", off, n)
			}
			js.torn = int64(len(rest))
			break
		}
		payload := rest[8 : 8+n]
		if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(rest[4:]) {
			if 8+n == len(rest) {
				js.torn = int64(len(rest))
				break
			}
			return nil, fmt.Errorf("journal record at offset %d: checksum mismatch (corrupt)", off)
		}
		info, ops, err := decodeRecord(payload)
		if err != nil {
			return nil, fmt.Errorf("journal record at offset %d: %v", off, err)
		}
		js.entries = append(js.entries, journalEntry{info: info, ops: ops, raw: rest[:8+n]})
		off += 8 + n
		js.good = int64(off)
	}
	return js, nil
}

// journal is the open, append-only journal file.
type journal struct {
	dir     string
	f       *os.File
	size    int64
	base    uint64
	pending []journalEntry // records after base, for rotation
}

func journalHeader(base uint64) []byte {
	h := make([]byte, journalHeaderLen)
	copy(h, journalMagic)
	binary.BigEndian.PutUint64(h[8:], base)
	return h
}

func openJournalAppend(dir string, size int64, base uint64, pending []journalEntry) (*journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return &journal{dir: dir, f: f, size: size, base: base, pending: pending}, nil
}

// append writes and fsyncs one record; on failure the file is cut back to
// its previous length.
func (j *journal) append(id uint64, rec []byte) error {
	if j.f == nil {
		return errors.New("journal unavailable after a failed rotation")
	}
	_, err := j.f.Write(rec)
	if err == nil {
		err = syncData(j.f)
	}
	if err != nil {
		j.f.Truncate(j.size)
		j.f.Seek(j.size, io.SeekStart)
		return err
	}
	j.size += int64(len(rec))
	j.pending = append(j.pending, journalEntry{info: CommitInfo{ID: id}, raw: rec})
	return nil
}

// rotate replaces the journal by one based on snapshot id base, keeping the
// records after it.
func (j *journal) rotate(base uint64) error {
	var buf bytes.Buffer
	buf.Write(journalHeader(base))
	var keep []journalEntry
	for _, e := range j.pending {
		if e.info.ID > base {
			buf.Write(e.raw)
			keep = append(keep, e)
		}
	}
	if err := writeFileAtomic(j.dir, journalName, buf.Bytes()); err != nil {
		return err
	}
	nj, err := openJournalAppend(j.dir, int64(buf.Len()), base, keep)
	if err != nil {
		j.f.Close()
		j.f = nil // the old file is gone: refuse commits rather than lose them
		return err
	}
	j.f.Close()
	*j = *nj
	return nil
}

func (j *journal) close() error {
	if j.f == nil {
		return nil
	}
	return j.f.Close()
}
