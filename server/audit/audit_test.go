package audit

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func applied(index uint64, cmd string) Record {
	return Record{Time: "2026-01-01T00:00:00.000Z", Kind: KindApplied, RaftIndex: index, Command: cmd, Outcome: Accepted,
		Who: &Who{Session: "abcdef012345", Mode: "full", Origin: "remote tool 10.0.0.7:5123 via alpha"}}
}

func authFailure(src string) Record {
	return Record{Time: "2026-01-01T00:00:00.000Z", Kind: KindAuthFailure, Command: "connect", Outcome: Refused,
		Who: &Who{Source: src, Mode: "full"}, Detail: "wrong password"}
}

// writeLog writes n applied records (raft indexes 1..n) into a fresh dir.
func writeLog(t *testing.T, n int, maxBytes int64) (string, *Writer) {
	t.Helper()
	dir := t.TempDir()
	w, err := Open(dir, Options{Member: "alpha", MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := w.Append(applied(uint64(i), fmt.Sprintf("cmd%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	return dir, w
}

func verifyOK(t *testing.T, dir string, wantRecords uint64) *Report {
	t.Helper()
	rep, err := VerifyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Broken != nil {
		t.Fatalf("intact log reported broken: %s", rep.Broken)
	}
	if rep.Records != wantRecords || rep.LastSeq != wantRecords {
		t.Fatalf("verify: %d records, last seq %d; want %d", rep.Records, rep.LastSeq, wantRecords)
	}
	return rep
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'})
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		if !bytes.HasSuffix(l, []byte{'\n'}) {
			b = append(b, '\n')
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func wantBroken(t *testing.T, dir, file string, seq uint64, problem string) {
	t.Helper()
	rep, err := VerifyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Broken == nil {
		t.Fatalf("tampered log verified as intact (%d records)", rep.Records)
	}
	b := rep.Broken
	if filepath.Base(b.File) != file || b.Seq != seq || !strings.Contains(b.Problem, problem) {
		t.Fatalf("broken at %s, want %s seq %d with %q", b, file, seq, problem)
	}
}

func TestChainIntactAndRecordFormat(t *testing.T) {
	dir, w := writeLog(t, 3, 0)
	if err := w.Append(authFailure("10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	rep := verifyOK(t, dir, 4)
	seq, hash := w.Head()
	if seq != 4 || hash != rep.LastHash {
		t.Fatalf("head %d %s, verify ends at %d %s", seq, hash, rep.LastSeq, rep.LastHash)
	}
	lines := readLines(t, filepath.Join(dir, CurrentName))
	first, err := decode(bytes.TrimSuffix(lines[0], []byte{'\n'}))
	if err != nil || first.Prev != Genesis || first.Seq != 1 || first.Member != "alpha" || first.LastRaftIndex != 1 {
		t.Fatalf("first record %+v, %v", first, err)
	}
	last, _ := decode(bytes.TrimSuffix(lines[3], []byte{'\n'}))
	if last.Kind != KindAuthFailure || last.LastRaftIndex != 3 || last.Who.Source != "10.0.0.9" {
		t.Fatalf("auth failure record %+v", last)
	}
}

// Each kind of tampering is detected, and the first broken record named.
func TestTamperDetected(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, path string)
		seq     uint64
		problem string
	}{
		{"edit a field", func(t *testing.T, path string) {
			lines := readLines(t, path)
			lines[2] = bytes.Replace(lines[2], []byte(`"outcome":"accepted"`), []byte(`"outcome":"refused"`), 1)
			writeLines(t, path, lines)
		}, 3, "does not match its hash"},
		{"edit a field and recompute nothing else", func(t *testing.T, path string) {
			lines := readLines(t, path)
			lines[1] = bytes.Replace(lines[1], []byte(`10.0.0.7`), []byte(`10.0.0.8`), 1)
			writeLines(t, path, lines)
		}, 2, "does not match its hash"},
		{"delete a record", func(t *testing.T, path string) {
			lines := readLines(t, path)
			writeLines(t, path, append(lines[:3:3], lines[4:]...))
		}, 5, "is not the hash of the record before it"},
		{"reorder", func(t *testing.T, path string) {
			lines := readLines(t, path)
			lines[2], lines[3] = lines[3], lines[2]
			writeLines(t, path, lines)
		}, 4, "is not the hash of the record before it"},
		{"truncate the middle", func(t *testing.T, path string) {
			lines := readLines(t, path)
			writeLines(t, path, append(lines[:1:1], lines[5:]...))
		}, 6, "is not the hash of the record before it"},
		{"delete the first record", func(t *testing.T, path string) {
			writeLines(t, path, readLines(t, path)[1:])
		}, 2, "does not start here"},
		{"cut a record in half", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			os.WriteFile(path, b[:len(b)-20], 0o600)
		}, 0, "incomplete"},
		{"rewrite a record and its hash", func(t *testing.T, path string) {
			// An attacker who recomputes the edited record's own hash still
			// breaks the link from the next record.
			lines := readLines(t, path)
			r, _ := decode(bytes.TrimSuffix(lines[2], []byte{'\n'}))
			r.Outcome = Refused
			line, _ := encode(r)
			lines[2] = line
			writeLines(t, path, lines)
		}, 4, "is not the hash of the record before it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, w := writeLog(t, 8, 0)
			w.Close()
			verifyOK(t, dir, 8)
			tc.tamper(t, filepath.Join(dir, CurrentName))
			wantBroken(t, dir, CurrentName, tc.seq, tc.problem)
		})
	}
}

func rotatedFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files[:len(files)-1]
}

// Rotation by size keeps one chain: each new file's first record links to
// the previous file's last.
func TestRotationKeepsChain(t *testing.T) {
	dir, w := writeLog(t, 40, 2000)
	rot := rotatedFiles(t, dir)
	if len(rot) < 3 {
		t.Fatalf("%d rotated files with a 2000-byte limit, want several", len(rot))
	}
	for _, f := range rot {
		st, _ := os.Stat(f)
		if st.Size() > 2000 {
			t.Fatalf("%s is %d bytes, over the limit", f, st.Size())
		}
	}
	rep := verifyOK(t, dir, 40)
	if len(rep.Files) != len(rot)+1 {
		t.Fatalf("verified %v", rep.Files)
	}
	// The first record of the second file links to the last of the first.
	a := readLines(t, rot[0])
	b := readLines(t, rot[1])
	lastA, _ := decode(bytes.TrimSuffix(a[len(a)-1], []byte{'\n'}))
	firstB, _ := decode(bytes.TrimSuffix(b[0], []byte{'\n'}))
	if firstB.Prev != lastA.Hash || firstB.Seq != lastA.Seq+1 {
		t.Fatalf("file %s starts with %+v, previous file ends with %+v", rot[1], firstB, lastA)
	}
	if want := rotatedName(firstB.Seq); filepath.Base(rot[1]) != want {
		t.Fatalf("rotated file named %s, want %s", rot[1], want)
	}
	w.Close()

	// Removing a rotated file in the middle, or the first one, is detected.
	os.Remove(rot[1])
	c := readLines(t, rot[2])
	firstC, _ := decode(bytes.TrimSuffix(c[0], []byte{'\n'}))
	wantBroken(t, dir, filepath.Base(rot[2]), firstC.Seq, "a rotated file is missing")
	os.Remove(rot[0])
	wantBroken(t, dir, filepath.Base(rot[2]), firstC.Seq, "does not start here")
}

func TestEmptiedRotatedFileDetected(t *testing.T) {
	dir, w := writeLog(t, 40, 2000)
	w.Close()
	rot := rotatedFiles(t, dir)
	os.WriteFile(rot[len(rot)-1], nil, 0o600)
	wantBroken(t, dir, filepath.Base(rot[len(rot)-1]), 0, "empty")
}

// A writer reopened after a restart continues the chain, across rotated
// files too, and skips the Raft entries it already audited (replay).
func TestRestartContinuesChainAndSkipsReplay(t *testing.T) {
	dir, w := writeLog(t, 20, 2000)
	w.Append(authFailure("10.0.0.9"))
	seq, hash := w.Head()
	w.Close()

	w2, err := Open(dir, Options{Member: "alpha", MaxBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if s2, h2 := w2.Head(); s2 != seq || h2 != hash || w2.LastRaftIndex() != 20 {
		t.Fatalf("reopened at %d %s index %d, want %d %s index 20", s2, h2, w2.LastRaftIndex(), seq, hash)
	}
	// Raft replays entries 11..25 after a restart from a snapshot at 10.
	for i := uint64(11); i <= 25; i++ {
		if err := w2.Append(applied(i, fmt.Sprintf("cmd%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	w2.Close()
	verifyOK(t, dir, 21+5)
	var indexes []uint64
	files, _ := Files(dir)
	for _, f := range files {
		for _, l := range readLines(t, f) {
			r, err := decode(bytes.TrimSuffix(l, []byte{'\n'}))
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind == KindApplied {
				indexes = append(indexes, r.RaftIndex)
			}
		}
	}
	for i, idx := range indexes {
		if idx != uint64(i+1) {
			t.Fatalf("applied raft indexes %v: want 1..25 each once", indexes)
		}
	}
	if len(indexes) != 25 {
		t.Fatalf("applied raft indexes %v: want 1..25 each once", indexes)
	}
}

// A crash in the middle of a write leaves a partial line: the writer moves
// it aside, says so in the chain, and the chain stays verifiable.
func TestTornTailRecovered(t *testing.T) {
	dir, w := writeLog(t, 3, 0)
	w.Close()
	path := filepath.Join(dir, CurrentName)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":4,"time":"2026-01-01T00:00:0`)
	f.Close()
	wantBroken(t, dir, CurrentName, 0, "incomplete")

	w2, err := Open(dir, Options{Member: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	w2.Append(applied(4, "cmd4"))
	w2.Close()
	verifyOK(t, dir, 5)
	lines := readLines(t, path)
	r, _ := decode(bytes.TrimSuffix(lines[3], []byte{'\n'}))
	if r.Kind != KindRecovery || !strings.Contains(r.Detail, "incomplete") {
		t.Fatalf("record after the torn line: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "torn-00000000000000000004.partial")); err != nil {
		t.Fatalf("torn bytes not kept aside: %v", err)
	}
}

// Verify on files given one by one (triadd audit verify FILE...) checks
// them as one chain in the order given.
func TestVerifyFilesInOrder(t *testing.T) {
	dir, w := writeLog(t, 30, 2000)
	w.Close()
	files, _ := Files(dir)
	rep, err := Verify(files)
	if err != nil || rep.Broken != nil || rep.Records != 30 {
		t.Fatalf("verify %v: %+v %v", files, rep, err)
	}
	rev := append([]string{files[1], files[0]}, files[2:]...)
	rep, _ = Verify(rev)
	if rep.Broken == nil || rep.Broken.File != files[1] {
		t.Fatalf("files out of order verified: %+v", rep)
	}
}

// One Append call that crosses the size limit rotates in the middle and
// keeps the chain.
func TestRotationWithinOneAppend(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, Options{Member: "alpha", MaxBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := 1; i <= 40; i++ {
		recs = append(recs, applied(uint64(i), "cmd"))
	}
	if err := w.Append(recs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	files, _ := Files(dir)
	if len(files) < 4 {
		t.Fatalf("files %v: want rotation inside the append", files)
	}
	for _, f := range files {
		if st, _ := os.Stat(f); st.Size() > 2000 {
			t.Fatalf("%s is %d bytes", f, st.Size())
		}
	}
	verifyOK(t, dir, 40)
}

// When Raft storage is new under an old audit log, applied records start
// again from index 1 instead of being skipped as replays.
func TestRestartRaftIndexes(t *testing.T) {
	dir, w := writeLog(t, 5, 0)
	if err := w.RestartRaftIndexes(Record{Command: "open"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(applied(1, "form_cluster")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	verifyOK(t, dir, 7)
	lines := readLines(t, filepath.Join(dir, CurrentName))
	r, _ := decode(bytes.TrimSuffix(lines[6], []byte{'\n'}))
	if r.Kind != KindApplied || r.RaftIndex != 1 || r.LastRaftIndex != 1 {
		t.Fatalf("after the restart of indexes: %+v", r)
	}
}
