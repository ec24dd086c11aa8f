package framework

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigContext is the context name in kubeconfig files the framework writes.
const KubeconfigContext = "ipp-e2e"

// WriteKubeconfig writes a kubeconfig file for the admin user to path, with the credentials
// embedded, so that kubectl (or a component) can reach the cluster.
func (cp *ControlPlane) WriteKubeconfig(path string) error {
	return WriteKubeconfig(path, cp.AdminConfig)
}

// WriteKubeconfig writes cfg (host, CA and client certificate, all embedded) to path as a
// kubeconfig with a single context.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[KubeconfigContext] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
		TLSServerName:            cfg.ServerName,
	}
	kc.AuthInfos[KubeconfigContext] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kc.Contexts[KubeconfigContext] = &clientcmdapi.Context{Cluster: KubeconfigContext, AuthInfo: KubeconfigContext}
	kc.CurrentContext = KubeconfigContext
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}
