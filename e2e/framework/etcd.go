package framework

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// etcdServer is an embedded single-member etcd on loopback ports chosen by the kernel.
type etcdServer struct {
	etcd     *embed.Etcd
	dir      string
	endpoint string
}

// startEtcd starts etcd in a fresh temp dir, logging errors to logFile (or stderr if empty). It listens on 127.0.0.1 port 0 for clients and
// peers (a single-member cluster never dials its peer URL), so parallel test binaries cannot collide.
func startEtcd(ctx context.Context, logFile string) (*etcdServer, error) {
	dir, err := os.MkdirTemp("", "ipp-etcd-")
	if err != nil {
		return nil, fmt.Errorf("making etcd dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "ipp-e2e"
	cfg.Dir = dir
	// Durability does not matter for a throw-away cluster; fsync dominates write latency.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.Logger = "zap"
	cfg.LogOutputs = []string{"stderr"}
	if logFile != "" {
		cfg.LogOutputs = []string{logFile}
	}
	loopback := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls = []url.URL{loopback}
	cfg.AdvertiseClientUrls = []url.URL{loopback}
	cfg.ListenPeerUrls = []url.URL{loopback}
	cfg.AdvertisePeerUrls = []url.URL{loopback}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	s := &etcdServer{etcd: e, dir: dir}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		s.stop()
		return nil, fmt.Errorf("starting etcd: %w", err)
	case <-time.After(time.Minute):
		s.stop()
		return nil, fmt.Errorf("starting etcd: not ready after a minute")
	case <-ctx.Done():
		s.stop()
		return nil, fmt.Errorf("starting etcd: %w", ctx.Err())
	}
	s.endpoint = "http://" + e.Clients[0].Addr().String()
	return s, nil
}

func (s *etcdServer) stop() {
	s.etcd.Close()
	_ = os.RemoveAll(s.dir)
}
