package server

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// Addrs is what --addr-file holds: the addresses the member listens on,
// with the ports the system chose when 0 was asked.
type Addrs struct {
	Listen string `json:"listen"`
	Raft   string `json:"raft"`
	HTTP   string `json:"http"`
}

// writeAddrFile writes the addresses atomically (a reader polling for the
// file never sees half of it).
func writeAddrFile(path, listen, raftAddr, httpAddr string) error {
	b, err := json.Marshal(Addrs{Listen: listen, Raft: raftAddr, HTTP: httpAddr})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addr-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
