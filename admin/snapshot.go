package admin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/backup"
)

// SnapshotSaver is implemented by a Backend that can back up the
// replicated state (package server does).
type SnapshotSaver interface {
	// SaveSnapshot returns a consistent backup file (package backup).
	SaveSnapshot(ctx context.Context) ([]byte, error)
}

// snapshotChunk is the size of one streamed piece of a backup.
const snapshotChunk = 1 << 20

// SnapshotSave streams a backup of the replicated state (full mode: the
// file holds every license, lease secret and password hash).
func (s *Service) SnapshotSave(req *triadv1.SnapshotSaveRequest, stream triadv1.Admin_SnapshotSaveServer) error {
	ctx := stream.Context()
	me, err := s.auth(ctx, req.GetHeader(), "snapshot save", true)
	if err != nil {
		return err
	}
	b, ok := s.b.(SnapshotSaver)
	if !ok {
		return status.Error(codes.Unimplemented, "this member cannot take backups")
	}
	file, err := b.SaveSnapshot(ctx)
	s.served(ctx, me, "snapshot_save", map[string]string{"bytes": fmt.Sprint(len(file))}, err)
	if err != nil {
		return err
	}
	for off := 0; off < len(file); off += snapshotChunk {
		end := min(off+snapshotChunk, len(file))
		if err := stream.Send(&triadv1.SnapshotChunk{Data: file[off:end]}); err != nil {
			return err
		}
	}
	return nil
}

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "back up the cluster's replicated state (restore with `triadd restore`)",
		Subcommands: []*cli.Command{{
			Name:      "save",
			Usage:     "write a consistent backup of the replicated state to FILE (full mode)",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fmt.Errorf("give the backup file to write: triadctl snapshot save FILE")
				}
				path := c.Args().First()
				file, err := adminCall(c, ModeFull, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) ([]byte, error) {
					st, err := a.SnapshotSave(ctx, &triadv1.SnapshotSaveRequest{Header: h})
					if err != nil {
						return nil, err
					}
					var buf bytes.Buffer
					for {
						ch, err := st.Recv()
						if err == io.EOF {
							return buf.Bytes(), nil
						}
						if err != nil {
							return nil, err
						}
						if buf.Len()+len(ch.GetData()) > backup.MaxData+(2<<20) {
							return nil, fmt.Errorf("the backup stream is larger than %d bytes", backup.MaxData)
						}
						buf.Write(ch.GetData())
					}
				})
				if err != nil {
					return err
				}
				hdr, _, err := backup.Read(bytes.NewReader(file))
				if err != nil {
					return fmt.Errorf("the backup received does not verify (%v): nothing written; retry", err)
				}
				if err := writeFileDurable(path, file); err != nil {
					return err
				}
				if jsonOutput(c) {
					return printJSON(stdout(c), hdr)
				}
				fmt.Fprintf(stdout(c), "saved %s: %d bytes, Raft index %d, term %d, taken on %s\n", path, len(file), hdr.GetIndex(), hdr.GetTerm(), hdr.GetMember())
				return nil
			},
		}, {
			Name:      "inspect",
			Usage:     "verify a backup file's checksums and show its header (offline)",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fmt.Errorf("give the backup file: triadctl snapshot inspect FILE")
				}
				f, err := os.Open(c.Args().First())
				if err != nil {
					return err
				}
				defer f.Close()
				hdr, data, err := backup.Read(f)
				if err != nil {
					return fmt.Errorf("%s: %v", c.Args().First(), err)
				}
				if jsonOutput(c) {
					return printJSON(stdout(c), hdr)
				}
				w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
				fmt.Fprintf(w, "cluster id\t%s\nmode\t%s\nraft index\t%d\nterm\t%d\ntaken\t%s on %s (version %s)\nstate\t%d bytes, checksum ok\n",
					hdr.GetClusterId(), hdr.GetMode(), hdr.GetIndex(), hdr.GetTerm(), fmtMs(hdr.GetCreatedMs()), hdr.GetMember(), hdr.GetVersion(), len(data))
				tableHeader(c, w, "MEMBER\tCOMPUTER ID\tADDRESS\tMACHINE PROOF")
				for _, m := range hdr.GetMembers() {
					proof := "recorded"
					if m.GetMachineProof() == "" {
						proof = "none (restore needs the member's computer-id file)"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.GetName(), m.GetComputerId(), m.GetGrpcAddress(), proof)
				}
				return w.Flush()
			},
		}},
	}
}

// writeFileDurable writes path atomically (a temporary file renamed over
// it after fsync), readable by its owner only: a backup holds secrets.
func writeFileDurable(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
