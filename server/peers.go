package server

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
)

// peerClient returns a Peer client for the member whose failover port is
// addr; a bad address yields a client whose calls fail with that error.
func (s *Server) peerClient(addr string) peerpb.PeerClient {
	if addr == "" {
		return failingPeer{ErrNoLeader}
	}
	c, err := s.side.Conn(addr)
	if err != nil {
		return failingPeer{err}
	}
	return peerpb.NewPeerClient(c)
}

func (s *Server) pingPeer(ctx context.Context, addr string, req *peerpb.PingRequest) (*peerpb.PingResponse, error) {
	if f := s.diskFault(); f != nil {
		return nil, f.status() // fenced: out of the cluster (see Ping)
	}
	resp, err := s.peerClient(addr).Ping(ctx, req)
	s.peerDisk.note(addr, err)
	return resp, err
}

type failingPeer struct{ err error }

func (f failingPeer) Info(context.Context, *peerpb.InfoRequest, ...grpc.CallOption) (*peerpb.InfoResponse, error) {
	return nil, f.err
}
func (f failingPeer) Bootstrap(context.Context, *peerpb.BootstrapRequest, ...grpc.CallOption) (*peerpb.BootstrapResponse, error) {
	return nil, f.err
}
func (f failingPeer) Ping(context.Context, *peerpb.PingRequest, ...grpc.CallOption) (*peerpb.PingResponse, error) {
	return nil, f.err
}
func (f failingPeer) Forward(context.Context, *peerpb.ForwardRequest, ...grpc.CallOption) (*peerpb.ForwardResponse, error) {
	return nil, f.err
}
func (f failingPeer) ForwardCommand(context.Context, *peerpb.ForwardCommandRequest, ...grpc.CallOption) (*peerpb.ForwardCommandResponse, error) {
	return nil, f.err
}
func (f failingPeer) ForwardStream(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[peerpb.ForwardStreamRequest, peerpb.ForwardStreamResponse], error) {
	return nil, f.err
}

// peerService implements the Peer gRPC service.
type peerService struct {
	peerpb.UnimplementedPeerServer
	s *Server
}

func (p *peerService) Info(ctx context.Context, req *peerpb.InfoRequest) (*peerpb.InfoResponse, error) {
	if req.GetReadIndex() {
		if !p.s.consistentReady.Load() { // a follower, or a leader before its barrier
			return nil, toStatus(ErrNotReadyForReads)
		}
		if !p.s.isLeader() {
			return nil, toStatus(ErrNotLeader)
		}
		if _, err := p.s.leaderReadIndex(); err != nil {
			return nil, toStatus(err)
		}
	}
	return p.s.info(), nil
}

func (p *peerService) Bootstrap(ctx context.Context, req *peerpb.BootstrapRequest) (*peerpb.BootstrapResponse, error) {
	if req.GetPeerProtocolVersion() != PeerProtocolVersion {
		return nil, status.Errorf(codes.FailedPrecondition, "peer protocol version %d is not supported (this member: %d): run the same Triad version on all members", req.GetPeerProtocolVersion(), PeerProtocolVersion)
	}
	if err := p.s.bootstrap(req.GetCluster()); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	return &peerpb.BootstrapResponse{}, nil
}

func (p *peerService) Ping(ctx context.Context, req *peerpb.PingRequest) (*peerpb.PingResponse, error) {
	if f := p.s.diskFault(); f != nil {
		// A fenced member is out of the cluster: the others see their
		// links to it down and report the cluster partially operational.
		return nil, f.status()
	}
	return p.s.mon.HandlePing(req), nil
}

func (p *peerService) Forward(ctx context.Context, req *peerpb.ForwardRequest) (*peerpb.ForwardResponse, error) {
	res, err := p.s.submitOpsUntil(ctx, req.GetBatch().GetOps(), forwardedDeadlines(ctx, req), true)
	if err != nil {
		return nil, toStatus(err)
	}
	return forwardResponse(res), nil
}

// ForwardStream serves a follower's Forward calls over one stream, each
// answered under its id. On the leader a batch that passes the input
// checks goes to the batcher from this goroutine and is answered from the
// goroutine that flushed it (Server.forwardedThen); anything else (not the
// leader, a fenced disk, a refused batch, a failed first try) runs as the
// unary Forward call would, on a worker.
func (p *peerService) ForwardStream(stream peerpb.Peer_ForwardStreamServer) error {
	if p.s.cfg.TestNoForwardStream {
		return status.Error(codes.Unimplemented, "unknown method ForwardStream for service triad.peer.v1.Peer")
	}
	ctx := stream.Context()
	var (
		sendMu sync.Mutex
		wg     sync.WaitGroup // answers not yet sent: Send is not called after return
	)
	defer wg.Wait()
	send := func(out *peerpb.ForwardStreamResponse) {
		sendMu.Lock()
		defer sendMu.Unlock()
		_ = stream.Send(out) // an error means the stream is gone: Recv reports it
		wg.Done()
	}
	serve := func(req *peerpb.ForwardStreamRequest) {
		out := &peerpb.ForwardStreamResponse{Id: req.GetId()}
		if r, err := p.Forward(ctx, req.GetForward()); err != nil {
			out.Error, _ = proto.Marshal(status.Convert(err).Proto())
		} else {
			out.Forward = r
		}
		send(out)
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the follower closed the stream, or it broke
		}
		wg.Add(1)
		unary := func() { p.s.callWorkers.run(func() { serve(req) }) }
		if !p.s.forwardedThen(ctx, req.GetForward(), func(r *peerpb.ForwardResponse) {
			send(&peerpb.ForwardStreamResponse{Id: req.GetId(), Forward: r})
		}, unary) {
			unary()
		}
	}
}

// forwardResponse answers a forwarded batch from its results (nil: the op
// was dropped for its deadline).
func forwardResponse(res []*fsmpb.OpResult) *peerpb.ForwardResponse {
	out := &peerpb.ForwardResponse{Results: res}
	for i, r := range res {
		if r == nil { // dropped for its deadline: never proposed
			res[i] = &fsmpb.OpResult{}
			out.Dropped = append(out.Dropped, uint32(i))
		}
	}
	return out
}

func (p *peerService) ForwardCommand(ctx context.Context, req *peerpb.ForwardCommandRequest) (*peerpb.ForwardCommandResponse, error) {
	switch req.GetCommand().GetCmd().(type) {
	case *fsmpb.Command_EnrollLicense, *fsmpb.Command_RemoveLicense, *fsmpb.Command_FormCluster,
		*fsmpb.Command_OpenSession, *fsmpb.Command_CloseSession, *fsmpb.Command_TouchSession,
		*fsmpb.Command_SetPasswords, *fsmpb.Command_SetSettings,
		*fsmpb.Command_RecycleNamedUser, *fsmpb.Command_SetRules,
		*fsmpb.Command_AddVendorKey, *fsmpb.Command_RemoveVendorKey,
		*fsmpb.Command_ReplaceMember, *fsmpb.Command_SetTrace:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "command %T cannot be forwarded", req.GetCommand().GetCmd())
	}
	res, err := p.s.applyCommand(ctx, req.GetCommand(), true)
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerpb.ForwardCommandResponse{Result: res}, nil
}
