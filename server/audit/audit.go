// Package audit is a member's append-only, hash-chained audit log: JSON
// lines in DIR/audit.log, rotated by size into DIR/audit-SEQ.log files
// (SEQ: the first record's sequence number, zero-padded so that names sort
// in chain order).
//
// Each line is one Record. Its hash is the SHA-256 of the line without its
// trailing hash field (the exact bytes written, up to the closing brace);
// each record carries the previous record's hash (64 zeros for the first
// record ever) and a sequence number one above the previous one. Rotation
// only renames the current file: the first record of the new file links to
// the last record of the old one, so the chain runs across files. Editing a
// field, deleting, reordering or inserting records, or removing a rotated
// file breaks the chain at a record Verify names.
//
// What the chain cannot prove on its own is that nothing was cut off the
// end; a running member knows its head (Writer.Head) and the online check
// compares it.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Genesis is the prev hash of the first record of a chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Record kinds.
const (
	// KindApplied: an administration command this member's state machine
	// applied (committed in the Raft log; every member records it).
	KindApplied = "applied"
	// KindAuthFailure: a refused authentication seen by this member.
	KindAuthFailure = "auth_failure"
	// KindServed: an administration action served by this member that the
	// log does not tell apart from ordinary traffic (force-release).
	KindServed = "served"
	// KindRecovery: what the writer did on opening a damaged log (a
	// partial last line left by a crash is set aside, never silently).
	KindRecovery = "recovery"
)

// Outcomes.
const (
	Accepted = "accepted"
	Refused  = "refused"
)

// Who is the actor of a record.
type Who struct {
	// Session is the first 12 characters of the session id (a hash of its
	// token), as `triadctl server show` prints it.
	Session string `json:"session,omitempty"`
	Mode    string `json:"mode,omitempty"`
	// Origin is how the member saw the tool ("remote tool 10.0.0.7:5123 via alpha").
	Origin string `json:"origin,omitempty"`
	Local  bool   `json:"local,omitempty"`
	// Source is the client's IP address (auth failures).
	Source string `json:"source,omitempty"`
	// Member the tool connected through.
	Member string `json:"member,omitempty"`
}

// Record is one audit line. Seq, Prev, LastRaftIndex and Hash are set by
// the Writer.
type Record struct {
	Seq uint64 `json:"seq"`
	// Time of the event, RFC 3339 UTC with milliseconds: the command's
	// time for applied records (the same on every member).
	Time   string `json:"time"`
	Member string `json:"member"`
	Kind   string `json:"kind"`
	// RaftIndex of an applied command.
	RaftIndex uint64 `json:"raft_index,omitempty"`
	Command   string `json:"command"`
	Who       *Who   `json:"who,omitempty"`
	Outcome   string `json:"outcome"`
	// Detail is the answer: the state machine's message or the refusal.
	Detail string `json:"detail,omitempty"`
	// Args summarize the command; never passwords, hashes or secrets.
	Args map[string]string `json:"args,omitempty"`
	// LastRaftIndex is the highest Raft index audited up to this record:
	// after a restart, Raft replays entries since its last snapshot, and
	// the writer skips those already here.
	LastRaftIndex uint64 `json:"last_raft_index"`
	Prev          string `json:"prev"`
	Hash          string `json:"-"`
}

const hashField = `,"hash":"`

// encode returns the line for r (with r.Hash set) and the hash.
func encode(r *Record) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	line := make([]byte, 0, len(body)+len(hashField)+len(h)+3)
	line = append(line, body[:len(body)-1]...)
	line = append(line, hashField...)
	line = append(line, h...)
	line = append(line, '"', '}', '\n')
	r.Hash = h
	return line, nil
}

// decode parses one line (without its newline) and checks its own hash.
func decode(line []byte) (*Record, error) {
	i := bytes.LastIndex(line, []byte(hashField))
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return nil, errors.New("not an audit record (no hash field at the end)")
	}
	h := string(line[i+len(hashField) : len(line)-2])
	body := append(bytes.Clone(line[:i]), '}')
	r := &Record{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("not an audit record: %v", err)
	}
	sum := sha256.Sum256(body)
	if want := hex.EncodeToString(sum[:]); h != want {
		return r, fmt.Errorf("content does not match its hash (record edited): hash %s, content hashes to %s", short(h), short(want))
	}
	r.Hash = h
	return r, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// CurrentName is the file records are appended to.
const CurrentName = "audit.log"

func rotatedName(firstSeq uint64) string { return fmt.Sprintf("audit-%020d.log", firstSeq) }

// Files lists dir's audit files in chain order: rotated ones by their first
// sequence number, then the current one (if present).
func Files(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var rotated []string
	current := ""
	for _, e := range ents {
		n := e.Name()
		switch {
		case e.IsDir():
		case n == CurrentName:
			current = filepath.Join(dir, n)
		case strings.HasPrefix(n, "audit-") && strings.HasSuffix(n, ".log"):
			rotated = append(rotated, filepath.Join(dir, n))
		}
	}
	sort.Strings(rotated)
	if current != "" {
		rotated = append(rotated, current)
	}
	return rotated, nil
}

// Options configure a Writer.
type Options struct {
	// Member is written into every record.
	Member string
	// MaxBytes: the current file is rotated before it would grow past this
	// (default 10 MiB).
	MaxBytes int64
}

// DefaultMaxBytes is the rotation size.
const DefaultMaxBytes = 10 << 20

// Writer appends records to the chain. Safe for concurrent use.
type Writer struct {
	mu        sync.Mutex
	dir       string
	opt       Options
	f         *os.File
	size      int64
	firstSeq  uint64 // of the current file; 0 when it is empty
	seq       uint64
	last      string
	lastIndex uint64
}

// Open opens (or creates) the audit log in dir and continues its chain.
// A partial last line (a crash in the middle of a write) is moved aside
// and the fact recorded; any other damage is left for Verify to report,
// and the chain continues from the last record that reads.
func Open(dir string, opt Options) (*Writer, error) {
	if opt.MaxBytes <= 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create audit directory: %w", err)
	}
	w := &Writer{dir: dir, opt: opt, last: Genesis}
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	var torn []byte
	// The chain continues from the last record of the newest file that has one.
	for i := len(files) - 1; i >= 0; i-- {
		last, first, partial, err := lastRecord(files[i])
		if err != nil {
			return nil, err
		}
		if files[i] == filepath.Join(dir, CurrentName) {
			if len(partial) > 0 {
				torn = partial
				if err := cutPartial(files[i], int64(len(partial))); err != nil {
					return nil, err
				}
			}
			if first != nil {
				w.firstSeq = first.Seq
			}
		}
		if last != nil {
			w.seq, w.last, w.lastIndex = last.Seq, last.Hash, last.LastRaftIndex
			break
		}
	}
	path := filepath.Join(dir, CurrentName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	w.f, w.size = f, st.Size()
	if torn != nil {
		aside := filepath.Join(dir, fmt.Sprintf("torn-%020d.partial", w.seq+1))
		if err := os.WriteFile(aside, torn, 0o600); err != nil {
			f.Close()
			return nil, err
		}
		err := w.Append(Record{Member: opt.Member, Kind: KindRecovery, Command: "open", Outcome: Accepted,
			Detail: fmt.Sprintf("the last line of %s was incomplete (%d bytes, a write cut short by a crash): moved to %s", CurrentName, len(torn), filepath.Base(aside))})
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	return w, nil
}

// lastRecord reads a file and returns its first and last readable records
// and the bytes after the last newline (a partial line).
func lastRecord(path string) (last, first *Record, partial []byte, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i+1 < len(b) {
		partial = b[i+1:]
		b = b[:i+1]
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		r, err := decode(line)
		if err != nil || r == nil {
			continue
		}
		if first == nil {
			first = r
		}
		last = r
	}
	return last, first, partial, nil
}

func cutPartial(path string, n int64) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.Truncate(path, st.Size()-n)
}

// LastRaftIndex is the highest Raft index audited.
func (w *Writer) LastRaftIndex() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastIndex
}

// Head is the last record's sequence number and hash (0, Genesis when empty).
func (w *Writer) Head() (uint64, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq, w.last
}

// RestartRaftIndexes records that the member's Raft storage is new (wiped,
// or the member rebuilt) while its audit log is not: Raft indexes start over,
// so applied records must no longer be compared with the old ones.
func (w *Writer) RestartRaftIndexes(r Record) error {
	w.mu.Lock()
	old := w.lastIndex
	w.lastIndex = 0
	w.mu.Unlock()
	r.Kind, r.Outcome = KindRecovery, Accepted
	if r.Detail == "" {
		r.Detail = fmt.Sprintf("Raft storage is new: Raft indexes start over (the last one audited was %d)", old)
	}
	return w.Append(r)
}

// Dir is the audit directory.
func (w *Writer) Dir() string { return w.dir }

// Append writes records in order and syncs the file. An applied record
// whose Raft index is not above the last one audited is skipped (Raft
// replaying its log after a restart).
func (w *Writer) Append(recs ...Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return errors.New("audit log closed")
	}
	var buf bytes.Buffer
	for _, r := range recs {
		if r.Kind == KindApplied {
			if r.RaftIndex <= w.lastIndex {
				continue
			}
			w.lastIndex = r.RaftIndex
		}
		if r.Member == "" {
			r.Member = w.opt.Member
		}
		r.Seq, r.Prev, r.LastRaftIndex = w.seq+1, w.last, w.lastIndex
		line, err := encode(&r)
		if err != nil {
			return err
		}
		if pending := w.size + int64(buf.Len()); pending > 0 && pending+int64(len(line)) > w.opt.MaxBytes {
			if err := w.writeLocked(buf.Bytes()); err != nil {
				return err
			}
			buf.Reset()
			if err := w.rotateLocked(); err != nil {
				return err
			}
		}
		if w.firstSeq == 0 {
			w.firstSeq = r.Seq
		}
		buf.Write(line)
		w.seq, w.last = r.Seq, r.Hash
	}
	return w.writeLocked(buf.Bytes())
}

func (w *Writer) writeLocked(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := w.f.Write(b)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	return w.f.Sync()
}

// rotateLocked renames the current file after its first record and starts
// an empty one; the chain continues across.
func (w *Writer) rotateLocked() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	cur := filepath.Join(w.dir, CurrentName)
	if err := os.Rename(cur, filepath.Join(w.dir, rotatedName(w.firstSeq))); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	f, err := os.OpenFile(cur, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		w.f = nil
		return fmt.Errorf("rotate audit log: %w", err)
	}
	if d, err := os.Open(w.dir); err == nil {
		d.Sync()
		d.Close()
	}
	w.f, w.size, w.firstSeq = f, 0, 0
	return nil
}

// Close closes the file; later appends fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Report is Verify's verdict.
type Report struct {
	Files    []string
	Records  uint64
	LastSeq  uint64
	LastHash string
	// Broken is the first break in the chain; nil when intact.
	Broken *Break
}

// Break locates the first broken record.
type Break struct {
	File string
	// Seq of the broken record as written in it (0 when unreadable).
	Seq uint64
	// Line number in File, from 1 (0: the file as a whole).
	Line    uint64
	Problem string
}

func (b *Break) String() string {
	where := filepath.Base(b.File)
	if b.Line > 0 {
		where += fmt.Sprintf(" line %d", b.Line)
	}
	if b.Seq > 0 {
		where += fmt.Sprintf(" (seq %d)", b.Seq)
	}
	return where + ": " + b.Problem
}

// VerifyDir checks every audit file in dir, oldest first.
func VerifyDir(dir string) (*Report, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no audit files (audit.log, audit-*.log) in %s", dir)
	}
	return Verify(files)
}

// Verify checks files as one chain, in the order given, from the first
// record ever (seq 1, prev = Genesis). It stops at the first break.
func Verify(files []string) (*Report, error) {
	rep := &Report{Files: files, LastHash: Genesis}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		brk := verifyFile(f, path, rep)
		f.Close()
		if brk != nil {
			rep.Broken = brk
			return rep, nil
		}
	}
	return rep, nil
}

func verifyFile(r io.Reader, path string, rep *Report) *Break {
	br := bufio.NewReaderSize(r, 64<<10)
	var lineNo uint64
	empty := true
	for {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return &Break{File: path, Line: lineNo + 1, Problem: err.Error()}
		}
		lineNo++
		empty = false
		if !bytes.HasSuffix(line, []byte{'\n'}) {
			return &Break{File: path, Line: lineNo, Problem: "the last line is incomplete (no newline): truncated or cut short by a crash"}
		}
		rec, derr := decode(line[:len(line)-1])
		if rec == nil {
			return &Break{File: path, Line: lineNo, Problem: derr.Error()}
		}
		if derr != nil {
			return &Break{File: path, Seq: rec.Seq, Line: lineNo, Problem: derr.Error()}
		}
		want := rep.LastSeq + 1
		switch {
		case rec.Prev != rep.LastHash && rep.LastSeq == 0:
			return &Break{File: path, Seq: rec.Seq, Line: lineNo, Problem: fmt.Sprintf(
				"the chain does not start here: prev is %s, not the genesis hash (earlier records or a rotated file are missing)", short(rec.Prev))}
		case rec.Prev != rep.LastHash:
			return &Break{File: path, Seq: rec.Seq, Line: lineNo, Problem: fmt.Sprintf(
				"prev %s is not the hash of the record before it (seq %d, %s): records deleted, inserted or reordered, or a rotated file is missing",
				short(rec.Prev), rep.LastSeq, short(rep.LastHash))}
		case rec.Seq != want:
			return &Break{File: path, Seq: rec.Seq, Line: lineNo, Problem: fmt.Sprintf("seq %d follows seq %d (want %d)", rec.Seq, rep.LastSeq, want)}
		}
		rep.Records++
		rep.LastSeq, rep.LastHash = rec.Seq, rec.Hash
		if err == io.EOF {
			break
		}
	}
	if empty && filepath.Base(path) != CurrentName {
		return &Break{File: path, Problem: "a rotated audit file is empty (rotation never leaves one empty): its records were removed"}
	}
	return nil
}
