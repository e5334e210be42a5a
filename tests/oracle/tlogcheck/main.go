// Command tlogcheck is an independent oracle for our Python signed-note, checkpoint and
// Merkle code: it checks what Python produced with Go's golang.org/x/mod/sumdb/note and
// sumdb/tlog, which we did not write. Built by tests/evidence_store/test_checkpoint.py with
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o tlogcheck .
//
// Usage:
//
//	tlogcheck genkey NAME    print a Go-generated signer key and verifier key, one a line
//	tlogcheck sign SKEY      sign the note text on stdin; print the signed note
//	tlogcheck check          check the JSON request on stdin (see request); print a JSON
//	                         report; exit 1 with a message on stderr if anything fails
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// request is what "check" reads. Every part but vkey is optional.
type request struct {
	Vkey          string     `json:"vkey"`
	Checkpoint    string     `json:"checkpoint"`     // signed checkpoint note
	Leaf          string     `json:"leaf"`           // base64 leaf bytes
	Index         int64      `json:"index"`          // leaf index
	Proof         []string   `json:"proof"`          // base64 inclusion proof hashes
	OldCheckpoint string     `json:"old_checkpoint"` // signed note of an older checkpoint
	Consistency   []string   `json:"consistency"`    // base64 consistency proof old -> new
	TlogProof     string     `json:"tlog_proof"`     // a c2sp.org/tlog-proof, checked against Leaf
	// ConsistencyProof is what `bodycam-evidence consistency` prints (the body of a
	// c2sp.org/tlog-witness add-checkpoint request), checked from OldCheckpoint to its note.
	ConsistencyProof string `json:"consistency_proof"`
	StoredIndex   [][2]int64 `json:"stored_index"`   // (level, n) pairs to map with tlog.StoredHashIndex
}

type report struct {
	Origin      string   `json:"origin,omitempty"`
	Size        int64    `json:"size"`
	Root        string   `json:"root,omitempty"`
	Text        string   `json:"text,omitempty"`
	Checked     []string `json:"checked"`
	StoredIndex []int64  `json:"stored_index,omitempty"`
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies the note with note.Open and parses the first three lines of its
// text (tlog.ParseTree wants the old go.sum header, so the lines are parsed here).
func openCheckpoint(msg string, v note.Verifier) (checkpoint, string, error) {
	n, err := note.Open([]byte(msg), note.VerifierList(v))
	if err != nil {
		return checkpoint{}, "", fmt.Errorf("note.Open: %w", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 {
		return checkpoint{}, "", errors.New("checkpoint has fewer than three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, "", fmt.Errorf("bad checkpoint size %q", lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		return checkpoint{}, "", fmt.Errorf("bad checkpoint root %q", lines[2])
	}
	return checkpoint{lines[0], size, root}, n.Text, nil
}

func parseHashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, fmt.Errorf("proof hash %d: %w", i, err)
		}
		out[i] = h
	}
	return out, nil
}

// parseTlogProof follows c2sp.org/tlog-proof: header, optional extra, index, hashes,
// blank line, checkpoint note.
func parseTlogProof(text string) (int64, []tlog.Hash, string, error) {
	head, note, ok := strings.Cut(text, "\n\n")
	if !ok {
		return 0, nil, "", errors.New("tlog-proof: no blank line")
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		return 0, nil, "", fmt.Errorf("tlog-proof: bad header %q", lines[0])
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		if _, err := base64.StdEncoding.DecodeString(lines[0][6:]); err != nil {
			return 0, nil, "", errors.New("tlog-proof: bad extra")
		}
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return 0, nil, "", errors.New("tlog-proof: no index line")
	}
	index, err := strconv.ParseInt(lines[0][6:], 10, 64)
	if err != nil || strconv.FormatInt(index, 10) != lines[0][6:] {
		return 0, nil, "", fmt.Errorf("tlog-proof: bad index %q", lines[0])
	}
	hashes, err := parseHashes(lines[1:])
	return index, hashes, note, err
}

// checkConsistencyProof parses "old N", the proof hashes, a blank line and the newer signed
// checkpoint, and checks with tlog.CheckTree that the newer tree extends the old checkpoint's.
func checkConsistencyProof(text, oldNote string, v note.Verifier) error {
	head, msg, ok := strings.Cut(text, "\n\n")
	if !ok {
		return errors.New("consistency proof: no blank line")
	}
	lines := strings.Split(head, "\n")
	if !strings.HasPrefix(lines[0], "old ") {
		return fmt.Errorf("consistency proof: bad first line %q", lines[0])
	}
	oldSize, err := strconv.ParseInt(lines[0][4:], 10, 64)
	if err != nil || strconv.FormatInt(oldSize, 10) != lines[0][4:] {
		return fmt.Errorf("consistency proof: bad old size %q", lines[0])
	}
	proof, err := parseHashes(lines[1:])
	if err != nil {
		return err
	}
	newer, _, err := openCheckpoint(msg, v)
	if err != nil {
		return fmt.Errorf("consistency proof checkpoint: %w", err)
	}
	old, _, err := openCheckpoint(oldNote, v)
	if err != nil {
		return fmt.Errorf("old checkpoint: %w", err)
	}
	if old.size != oldSize || old.origin != newer.origin {
		return fmt.Errorf("consistency proof is from size %d of %q, the old checkpoint is size %d of %q",
			oldSize, newer.origin, old.size, old.origin)
	}
	if err := tlog.CheckTree(proof, newer.size, newer.root, old.size, old.root); err != nil {
		return fmt.Errorf("tlog.CheckTree(%d -> %d): %w", old.size, newer.size, err)
	}
	return nil
}

func check(in io.Reader) (*report, error) {
	var req request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		return nil, fmt.Errorf("reading request: %w", err)
	}
	v, err := note.NewVerifier(req.Vkey)
	if err != nil {
		return nil, fmt.Errorf("note.NewVerifier(%q): %w", req.Vkey, err)
	}
	rep := &report{Checked: []string{"vkey"}}
	for _, p := range req.StoredIndex {
		rep.StoredIndex = append(rep.StoredIndex, tlog.StoredHashIndex(int(p[0]), p[1]))
	}
	var leaf []byte
	if req.Leaf != "" {
		if leaf, err = base64.StdEncoding.DecodeString(req.Leaf); err != nil {
			return nil, errors.New("leaf is not base64")
		}
	}
	if req.ConsistencyProof != "" {
		if err := checkConsistencyProof(req.ConsistencyProof, req.OldCheckpoint, v); err != nil {
			return nil, err
		}
		rep.Checked = append(rep.Checked, "consistency-proof")
	}
	if req.Checkpoint == "" {
		return rep, nil
	}
	cp, text, err := openCheckpoint(req.Checkpoint, v)
	if err != nil {
		return nil, err
	}
	rep.Origin, rep.Size, rep.Root, rep.Text = cp.origin, cp.size, cp.root.String(), text
	rep.Checked = append(rep.Checked, "note")
	if req.Proof != nil {
		proof, err := parseHashes(req.Proof)
		if err != nil {
			return nil, err
		}
		if err := tlog.CheckRecord(proof, cp.size, cp.root, req.Index, tlog.RecordHash(leaf)); err != nil {
			return nil, fmt.Errorf("tlog.CheckRecord(index %d, size %d): %w", req.Index, cp.size, err)
		}
		rep.Checked = append(rep.Checked, "inclusion")
	}
	if req.OldCheckpoint != "" {
		old, _, err := openCheckpoint(req.OldCheckpoint, v)
		if err != nil {
			return nil, fmt.Errorf("old checkpoint: %w", err)
		}
		proof, err := parseHashes(req.Consistency)
		if err != nil {
			return nil, err
		}
		if err := tlog.CheckTree(proof, cp.size, cp.root, old.size, old.root); err != nil {
			return nil, fmt.Errorf("tlog.CheckTree(%d -> %d): %w", old.size, cp.size, err)
		}
		rep.Checked = append(rep.Checked, "consistency")
	}
	if req.TlogProof != "" {
		index, proof, msg, err := parseTlogProof(req.TlogProof)
		if err != nil {
			return nil, err
		}
		pcp, _, err := openCheckpoint(msg, v)
		if err != nil {
			return nil, fmt.Errorf("tlog-proof checkpoint: %w", err)
		}
		if err := tlog.CheckRecord(proof, pcp.size, pcp.root, index, tlog.RecordHash(leaf)); err != nil {
			return nil, fmt.Errorf("tlog-proof: tlog.CheckRecord(index %d, size %d): %w", index, pcp.size, err)
		}
		rep.Checked = append(rep.Checked, "tlog-proof")
	}
	return rep, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tlogcheck genkey NAME | sign SKEY | check")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "genkey":
		skey, vkey, err := note.GenerateKey(rand.Reader, os.Args[2])
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s\n%s\n", skey, vkey)
	case "sign":
		s, err := note.NewSigner(os.Args[2])
		if err != nil {
			fail(err)
		}
		text, err := io.ReadAll(os.Stdin)
		if err != nil {
			fail(err)
		}
		msg, err := note.Sign(&note.Note{Text: string(text)}, s)
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(msg)
	case "check":
		rep, err := check(os.Stdin)
		if err != nil {
			fail(err)
		}
		var out bytes.Buffer
		json.NewEncoder(&out).Encode(rep)
		os.Stdout.Write(out.Bytes())
	default:
		fmt.Fprintf(os.Stderr, "tlogcheck: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "tlogcheck: %v\n", err)
	os.Exit(1)
}
