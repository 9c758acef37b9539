// examples/go: a vsockmuxd client on containerd/ttrpc 1.1 with stubs from protoc-gen-go.
//
// It runs one process in a VM the daemon already knows (Exec, detached, its stdout to a file),
// waits for it, lists the VM's processes and prints the daemon's counters:
//
//	vsockmux-go-example -socket /run/vsockmux/vsockmux.sock -vm vm1 -stdout /tmp/out.log -- sh -c 'echo hi; exit 7'
//
// The stubs (package vsockmux_v1) are generated from proto/control.proto at build time; see
// run-example.sh. ttrpc routes by service and method name, so the typed wrapper below is a
// one-line Call per method.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/ttrpc"

	pb "vsockmux.example/controlpb"
)

// The ttrpc service every method belongs to.
const service = "vsockmux.v1.Control"

type control struct{ c *ttrpc.Client }

func (c control) exec(ctx context.Context, req *pb.ExecRequest) (*pb.ExecResponse, error) {
	resp := &pb.ExecResponse{}
	return resp, c.c.Call(ctx, service, "Exec", req, resp)
}

func (c control) wait(ctx context.Context, req *pb.WaitRequest) (*pb.WaitResponse, error) {
	resp := &pb.WaitResponse{}
	return resp, c.c.Call(ctx, service, "Wait", req, resp)
}

func (c control) ps(ctx context.Context, req *pb.PsRequest) (*pb.PsResponse, error) {
	resp := &pb.PsResponse{}
	return resp, c.c.Call(ctx, service, "Ps", req, resp)
}

func (c control) stats(ctx context.Context, req *pb.StatsRequest) (*pb.StatsResponse, error) {
	resp := &pb.StatsResponse{}
	return resp, c.c.Call(ctx, service, "Stats", req, resp)
}

func run() error {
	socket := flag.String("socket", "/run/vsockmux/vsockmux.sock", "vsockmuxd's control socket")
	vm := flag.String("vm", "", "the VM to run the process in")
	stdout := flag.String("stdout", "", "absolute path for the process's stdout (a file the daemon appends to)")
	flag.Parse()
	if *vm == "" || flag.NArg() == 0 {
		return fmt.Errorf("usage: %s -vm NAME [-socket PATH] [-stdout FILE] -- ARGV...", os.Args[0])
	}

	conn, err := net.Dial("unix", *socket)
	if err != nil {
		return err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	c := control{client}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ex, err := c.exec(ctx, &pb.ExecRequest{Vm: *vm, Argv: flag.Args(), StdoutPath: *stdout, Detach: true})
	if err != nil {
		return fmt.Errorf("Exec: %w", err)
	}
	fmt.Printf("exec: pid %d\n", ex.Pid)

	w, err := c.wait(ctx, &pb.WaitRequest{Vm: *vm, Pid: ex.Pid})
	if err != nil {
		return fmt.Errorf("Wait: %w", err)
	}
	fmt.Printf("wait: %s code %d\n", w.Exit.GetKind(), w.Exit.GetCode())

	ps, err := c.ps(ctx, &pb.PsRequest{Vm: *vm})
	if err != nil {
		return fmt.Errorf("Ps: %w", err)
	}
	for _, p := range ps.Processes {
		fmt.Printf("ps: pid %d %s stdout_bytes %d\n", p.Pid, p.State, p.GetBytes().GetStdoutBytes())
	}

	st, err := c.stats(ctx, &pb.StatsRequest{})
	if err != nil {
		return fmt.Errorf("Stats: %w", err)
	}
	fmt.Printf("stats: %s\n", st.String())

	// A call the daemon refuses comes back as a grpc status error with its code.
	if _, err := c.wait(ctx, &pb.WaitRequest{Vm: "no-such-vm", Pid: 1}); err != nil {
		fmt.Printf("refused: %v\n", err)
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "vsockmux-go-example: %v\n", err)
		os.Exit(1)
	}
}
