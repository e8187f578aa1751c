// wharf-cri-cleanup stops and removes every pod sandbox of one CRI runtime (the local node's
// containerd), the way the kubelet would: through the CRI, so that the runtime also tears down
// each pod's network (CNI DEL: veth, IP lease, portmap rules) and its network namespace.
// `cluster.sh down` runs it after stopping the kubelet. Built by lib-node.sh inside the cached
// Kubernetes v1.20.2 source tree (GOPATH mode), which vendors cri-api and grpc.
//
//	wharf-cri-cleanup /path/to/containerd.sock
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: wharf-cri-cleanup CONTAINERD_SOCKET")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "wharf-cri-cleanup: %v\n", err)
		os.Exit(1)
	}
}

func run(socket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dialCtx, dialCancel := context.WithTimeout(ctx, 10*time.Second)
	defer dialCancel()
	conn, err := grpc.DialContext(dialCtx, socket, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return fmt.Errorf("connecting to %s: %v", socket, err)
	}
	defer conn.Close()
	runtime := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing pod sandboxes: %v", err)
	}
	failed := 0
	for _, sandbox := range list.Items {
		name := sandbox.Id
		if m := sandbox.Metadata; m != nil {
			name = fmt.Sprintf("%s/%s (%.12s)", m.Namespace, m.Name, sandbox.Id)
		}
		// Stop first: it kills the containers and runs CNI DEL; Remove then deletes them.
		if _, err := runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sandbox.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "stopping pod %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandbox.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "removing pod %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("removed pod %s\n", name)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d pod sandboxes could not be removed", failed, len(list.Items))
	}
	return nil
}
