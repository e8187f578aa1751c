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
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	stopContainersGracefully(ctx, runtime)
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
		// NotFound: a container of the pod was already deleted behind the CRI's back (`ctr rm`,
		// as tests do to pull an image again); the sandbox is gone with it.
		if _, err := runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandbox.Id}); err != nil && status.Code(err) != codes.NotFound {
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

// stopContainersGracefully stops every running container with a grace period, all at once, as
// the kubelet would: SIGTERM, then SIGKILL after the grace period. StopPodSandbox alone kills
// them outright, and a container that cleans up on SIGTERM (hostess-agent removes its lines from
// the node's /etc/hosts and its containerd hosts.toml) would leave them behind.
func stopContainersGracefully(ctx context.Context, runtime runtimeapi.RuntimeServiceClient) {
	list, err := runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{
			State: runtimeapi.ContainerState_CONTAINER_RUNNING,
		}},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "listing containers (they will be killed with their pods): %v\n", err)
		return
	}
	var wg sync.WaitGroup
	for _, container := range list.Containers {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			if _, err := runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
				fmt.Fprintf(os.Stderr, "stopping container %.12s: %v\n", id, err)
			}
		}(container.Id)
	}
	wg.Wait()
}
