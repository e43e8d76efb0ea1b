// translate: Istio's own pilot translation of Kubernetes and Istio (or Gateway API) objects, for one proxy,
// as an Envoy bootstrap that a stock Envoy runs on loopback.
//
//	translate --proxy sidecar:SERVICE.NAMESPACE|gateway:NAME.NAMESPACE --port [SERVICE.NAMESPACE:]SERVICEPORT=HOST:PORT...
//	          [--admin-port N] [--output FILE] [--explain] FILE...
//
// The inputs are YAML files: Services, Pods, EndpointSlices, Namespaces and Gateway API objects go to the
// fake Kubernetes client; Istio's networking objects (VirtualService, DestinationRule, ServiceEntry,
// Gateway, Sidecar, WorkloadEntry) to its config store. Istio's in-process test discovery server
// (pilot/test/xds.FakeDiscoveryServer, which Istio's own simulation tests use) builds the proxy's listeners,
// routes, clusters and endpoints with the very code istiod runs. Nothing of the routing is rewritten;
// what is, and why:
//   - each --port gets a listener on HOST:PORT (loopback) carrying Istio's HTTP connection manager for that
//     port (sidecar: the outbound listener of the service's VIP when Istio built one — ports whose protocol
//     it detects at run time —, else 0.0.0.0_PORT with its route configuration "PORT"; gateway: the
//     gateway's listener for that port), with the route configuration inline (no RDS server here);
//   - EDS clusters become STATIC with the load assignment Istio computed (no EDS server here);
//   - transport sockets that need SDS (Istio mTLS to peers, istio-agent's certificates) are removed, and so
//     are HTTP and network filters of istio-proxy's own build that a stock Envoy does not have (metadata
//     exchange, Istio stats, ALPN override): none of them takes part in routing;
//   - everything else Istio generated (other listeners, the virtual outbound listener, inbound) is left out;
//   - Istio's configs get what the Kubernetes config store would give them: the cluster domain (short hosts
//     resolve against it) and creation times in input order (Istio merges a host's VirtualServices oldest
//     first);
//   - the bootstrap carries the layered runtime Istio's own bootstrap gives every proxy (pkg/bootstrap's
//     default runtime flags: RE2 programs up to 32768, as istio-agent would set them);
//   - CustomResourceDefinitions among the inputs are installed as a cluster has them, their annotations
//     included (Istio watches GRPCRoutes only when the Gateway API CRDs carry a recent bundle version);
//   - the proxy is a pod of the inputs: a sidecar is the first pod of its Service; a gateway the first pod of
//     the Service NAME when there is one (a Gateway API Gateway binds to its Service's pods), else a pod
//     labelled istio=NAME (what Istio Gateways select).
//
// --explain prints to standard error what Istio's Gateway API implementation generated and which services
// the proxy is a target of.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/kube/kclient/clienttest"
	istiolog "istio.io/istio/pkg/log"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type failer struct{ cleanups []func() }

func (f *failer) Fail()                        { os.Exit(3) }
func (f *failer) FailNow()                     { os.Exit(3) }
func (f *failer) Fatal(args ...any)            { fmt.Fprintln(os.Stderr, args...); os.Exit(3) }
func (f *failer) Fatalf(s string, args ...any) { fmt.Fprintf(os.Stderr, s+"\n", args...); os.Exit(3) }
func (f *failer) Log(args ...any)              {}
func (f *failer) Logf(string, ...any)          {}
func (f *failer) TempDir() string              { d, _ := os.MkdirTemp("", "translate"); return d }
func (f *failer) Helper()                      {}
func (f *failer) Cleanup(fn func())            { f.cleanups = append(f.cleanups, fn) }
func (f *failer) Skip(args ...any)             {}

type ports []string

func (p *ports) String() string     { return strings.Join(*p, ",") }
func (p *ports) Set(v string) error { *p = append(*p, v); return nil }

var istioKinds = map[string]bool{"VirtualService": true, "DestinationRule": true, "ServiceEntry": true,
	"Gateway": true, "Sidecar": true, "WorkloadEntry": true, "EnvoyFilter": false}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "translate: "+format+"\n", args...)
	os.Exit(2)
}

// split sorts the documents of the input files: Istio networking objects, and the rest (Kubernetes).
func split(files []string) (istio, kube string, objects, crds []map[string]any) {
	var ib, kb strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj == nil {
				continue
			}
			api, _ := obj["apiVersion"].(string)
			kind, _ := obj["kind"].(string)
			if kind == "CustomResourceDefinition" {
				crds = append(crds, obj) // installed in the cluster: see installCRDs
				continue
			}
			objects = append(objects, obj)
			if strings.HasPrefix(api, "networking.istio.io/") && istioKinds[kind] {
				ib.WriteString(doc + "\n---\n")
			} else {
				kb.WriteString(doc + "\n---\n")
			}
		}
	}
	return ib.String(), kb.String(), objects, crds
}

// installCRDs: the CustomResourceDefinitions among the inputs (the Gateway API's own), installed as a cluster
// has them. Istio watches a Gateway API kind only when its CRD carries a bundle-version annotation at or above
// its minimum (pkg/kube/kclient/crdwatcher.go); the fake client's CRDs carry none, so without this Istio
// ignores GRPCRoutes (and TLS/TCP routes) and every GRPCRoute would silently do nothing. Returns whether any
// was installed (then Istio's informers start late and the caller waits for them).
func installCRDs(t *failer, s *xds.FakeDiscoveryServer, crds []map[string]any) bool {
	for _, o := range crds {
		meta, _ := o["metadata"].(map[string]any)
		spec, _ := o["spec"].(map[string]any)
		names, _ := spec["names"].(map[string]any)
		annotations := map[string]string{}
		if a, ok := meta["annotations"].(map[string]any); ok {
			for k, v := range a {
				annotations[k] = fmt.Sprint(v)
			}
		}
		versions, _ := spec["versions"].([]any)
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			if stored, _ := vm["storage"].(bool); stored {
				clienttest.MakeCRDWithAnnotations(t, s.KubeClient(), schema.GroupVersionResource{
					Group: fmt.Sprint(spec["group"]), Version: fmt.Sprint(vm["name"]), Resource: fmt.Sprint(names["plural"])},
					annotations)
			}
		}
	}
	return len(crds) > 0
}

// settle: after CRDs came late, push until what Istio's Gateway API controller generated stops changing
// (its informers start on the CRD event and feed the controller asynchronously).
func settle(t *failer, s *xds.FakeDiscoveryServer) {
	count := func() int {
		n := 0
		for _, kind := range []config.GroupVersionKind{gvk.VirtualService, gvk.Gateway} {
			for _, c := range s.Env().GatewayAPIController.List(kind, "") {
				n += len(fmt.Sprint(c.Spec)) + 1
			}
		}
		return n
	}
	// stable for a second, synced: Istio's controller recomputes a route when a Service it names appears (until
	// then its backend is a 500), and on a busy machine that can come late
	last, stable := -1, 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && stable < 10; {
		time.Sleep(100 * time.Millisecond)
		if n := count(); n == last && s.Env().GatewayAPIController.HasSynced() {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	s.Discovery.ConfigUpdate(&model.PushRequest{Forced: true, Reason: model.NewReasonStats(model.GlobalUpdate)})
	s.EnsureSynced(t)
}

// proxyFor: the pod of a service (its labels and IP) as a sidecar, or an ingress gateway's pod: the first pod
// of the Service NAME when there is one (how Gateway API Gateways bind), else a pod labelled istio=NAME.
func proxyFor(spec string, objects []map[string]any) *model.Proxy {
	kind, target, ok := strings.Cut(spec, ":")
	name, ns, ok2 := strings.Cut(target, ".")
	if !ok || !ok2 {
		fail("--proxy sidecar:SERVICE.NAMESPACE or gateway:NAME.NAMESPACE, not %q", spec)
	}
	var selector map[string]any
	for _, o := range objects {
		meta, _ := o["metadata"].(map[string]any)
		if o["kind"] == "Service" && meta["name"] == name && meta["namespace"] == ns {
			s, _ := o["spec"].(map[string]any)
			selector, _ = s["selector"].(map[string]any)
		}
	}
	p := &model.Proxy{ConfigNamespace: ns, ID: name + "-pod." + ns, Metadata: &model.NodeMetadata{
		Namespace: ns, ClusterID: constants.DefaultClusterName, Labels: map[string]string{}}}
	if kind != "sidecar" && kind != "gateway" {
		fail("--proxy: %q is neither sidecar nor gateway", kind)
	}
	if kind == "gateway" && selector == nil {
		// no Service of that name: a gateway deployment selected by labels alone (Istio Gateways' selector)
		p.Type = model.Router
		// what selects a gateway's pods: Istio Gateways by their selector (istio: NAME here)
		p.Labels = map[string]string{"istio": name}
		p.Metadata.Labels = p.Labels
		p.IPAddresses = []string{"10.255.0.1"}
		return p
	}
	// a sidecar, or a gateway with a Service (a Gateway API Gateway binds to the pods of its Service, the
	// one Istio's deployment controller creates): the first pod the Service selects, its labels and IP
	p.Type = model.SidecarProxy
	if kind == "gateway" {
		p.Type = model.Router
	}
	// the first pod the Service selects: its labels and IP are the proxy's
	for _, o := range objects {
		meta, _ := o["metadata"].(map[string]any)
		if o["kind"] != "Pod" || meta["namespace"] != ns {
			continue
		}
		labels, _ := meta["labels"].(map[string]any)
		match := len(selector) > 0
		for k, v := range selector {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		p.Labels = map[string]string{}
		for k, v := range labels {
			p.Labels[k] = fmt.Sprint(v)
		}
		p.Metadata.Labels = p.Labels
		status, _ := o["status"].(map[string]any)
		if ip, _ := status["podIP"].(string); ip != "" {
			p.IPAddresses = []string{ip}
		}
		return p
	}
	fail("no Pod of Service %s.%s among the inputs (the sidecar's labels and address are its pod's)", name, ns)
	return nil
}

var istioOnly = []string{"istio.", "io.istio.", "envoy.filters.http.alpn", "envoy.filters.network.metadata_exchange",
	"envoy.filters.http.peer_metadata", "envoy.wasm"}

func stockEnvoyLacks(name string, cfg *anypb.Any) bool {
	for _, p := range istioOnly {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return cfg != nil && (strings.Contains(cfg.TypeUrl, "/istio.") || strings.Contains(cfg.TypeUrl, "/io.istio.") ||
		strings.Contains(cfg.TypeUrl, "/stats.PluginConfig"))
}

func httpManager(l *listener.Listener) (*hcm.HttpConnectionManager, bool) {
	for _, fc := range l.FilterChains {
		for _, f := range fc.Filters {
			if f.Name != "envoy.filters.network.http_connection_manager" {
				continue
			}
			m := &hcm.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(m); err == nil {
				return m, true
			}
		}
	}
	return nil, false
}

func main() {
	var (
		proxySpec string
		admin     int
		listen    ports
	)
	flag.StringVar(&proxySpec, "proxy", "", "sidecar:SERVICE.NAMESPACE or gateway:NAME.NAMESPACE")
	flag.Var(&listen, "port", "[SERVICE.NAMESPACE:]SERVICEPORT=HOST:PORT (repeatable): Istio's outbound routing for "+
		"that service port (its VIP listener when Istio built one, else 0.0.0.0_PORT) on HOST:PORT")
	flag.IntVar(&admin, "admin-port", 0, "Envoy's admin port on 127.0.0.1 (0: none)")
	explain := flag.Bool("explain", false, "print to standard error what Istio made of the Gateway API inputs")
	output := flag.String("output", "-", "where to write the bootstrap (JSON; -: standard output)")
	flag.Parse()
	logs := istiolog.DefaultOptions()
	logs.OutputPaths = []string{"stderr"} // standard output carries the bootstrap
	logs.SetDefaultOutputLevel(istiolog.DefaultScopeName, istiolog.ErrorLevel)
	for _, scope := range istiolog.Scopes() {
		scope.SetOutputLevel(istiolog.ErrorLevel)
	}
	if err := istiolog.Configure(logs); err != nil {
		fail("%v", err)
	}
	if proxySpec == "" || len(listen) == 0 || flag.NArg() == 0 {
		fail("usage: translate --proxy sidecar:SVC.NS|gateway:NAME.NS --port SERVICEPORT=HOST:PORT... FILE...")
	}
	istioCfg, kubeCfg, objects, crds := split(flag.Args())
	t := &failer{}
	// Istio's configs as the Kubernetes config store gives them to pilot: with the cluster's domain (short
	// destination hosts resolve against it) and creation times in the order of the inputs (Istio merges
	// VirtualServices of one host oldest first)
	configs, _, err := crd.ParseInputs(istioCfg)
	if err != nil {
		fail("%v", err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	for i := range configs {
		configs[i].Domain = "cluster.local"
		if configs[i].Namespace == "" {
			configs[i].Namespace = "default"
		}
		if configs[i].CreationTimestamp.IsZero() {
			configs[i].CreationTimestamp = t0.Add(time.Duration(i) * time.Second)
		}
	}
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{Configs: configs, KubernetesObjectString: kubeCfg})
	if installCRDs(t, s, crds) {
		settle(t, s)
	}
	proxy := s.SetupProxy(proxyFor(proxySpec, objects))
	if *explain {
		for _, st := range proxy.ServiceTargets {
			fmt.Fprintf(os.Stderr, "translate: the proxy is a target of %s:%d\n", st.Service.Hostname, st.Port.Port)
		}
		if proxy.MergedGateway != nil {
			fmt.Fprintf(os.Stderr, "translate: the proxy runs gateway servers %v\n", proxy.MergedGateway.ServerPorts)
		}
	}
	if *explain && s.Env().GatewayAPIController != nil {
		// what Istio's Gateway API implementation made of the Gateway API inputs (VirtualServices, as istiod's
		// debug endpoint shows them), and the status it gave each route
		for _, kind := range []config.GroupVersionKind{gvk.VirtualService, gvk.Gateway} {
			for _, c := range s.Env().GatewayAPIController.List(kind, "") {
				fmt.Fprintf(os.Stderr, "translate: generated %s %s/%s %v: %v\n", kind.Kind, c.Namespace, c.Name, c.Annotations, c.Spec)
			}
		}
	}
	listeners := s.Listeners(proxy)
	routes := map[string]*route.RouteConfiguration{}
	for _, r := range s.RoutesFromListeners(proxy, listeners) {
		routes[r.Name] = r
	}
	clusters := s.Clusters(proxy)
	assignments := map[string]*endpoint.ClusterLoadAssignment{}
	for _, cla := range s.Endpoints(proxy) {
		assignments[cla.ClusterName] = cla
	}

	// the runtime every Istio proxy's bootstrap carries (pkg/bootstrap's extractRuntimeFlags defaults): RE2
	// programs up to 32768 (Envoy's own default refuses above 100), and the rest as Istio sets it
	runtime, _ := structpb.NewStruct(map[string]any{
		"re2.max_program_size.error_level": "32768",
		"envoy.deprecated_features:envoy.config.listener.v3.Listener.hidden_envoy_deprecated_use_original_dst": true,
		"envoy.reloadable_features.http_reject_path_with_fragment":                                             false,
		"envoy.reloadable_features.fixed_heap_use_allocated":                                                   true,
		"envoy.reloadable_features.coalesce_lb_rebuilds_on_batch_update":                                       false,
	})
	boot := &bootstrap.Bootstrap{StaticResources: &bootstrap.Bootstrap_StaticResources{},
		LayeredRuntime: &bootstrap.LayeredRuntime{Layers: []*bootstrap.RuntimeLayer{{
			Name: "global config", LayerSpecifier: &bootstrap.RuntimeLayer_StaticLayer{StaticLayer: runtime}}}}}
	if admin > 0 {
		boot.Admin = &bootstrap.Admin{Address: socket("127.0.0.1", admin)}
	}
	// Istio's outbound listeners: 0.0.0.0_PORT for HTTP ports (every service on the port, told apart by Host),
	// VIP_PORT for a service whose port's protocol is detected at run time or TCP (one per service address)
	byAddress := map[string]*listener.Listener{}
	for _, l := range listeners {
		if sa := l.GetAddress().GetSocketAddress(); sa != nil {
			byAddress[sa.GetAddress()+":"+strconv.Itoa(int(sa.GetPortValue()))] = l
		}
	}
	vips := map[string]string{} // name.namespace -> the Service's cluster IP
	for _, o := range objects {
		meta, _ := o["metadata"].(map[string]any)
		spec, _ := o["spec"].(map[string]any)
		if o["kind"] == "Service" {
			if ip, _ := spec["clusterIP"].(string); ip != "" {
				vips[fmt.Sprint(meta["name"], ".", meta["namespace"])] = ip
			}
		}
	}
	for _, spec := range listen {
		target, hostPort, ok := strings.Cut(spec, "=")
		svcName, svcPort, named := strings.Cut(target, ":")
		if !named {
			svcName, svcPort = "", target
		}
		host, portText, ok2 := strings.Cut(hostPort, ":")
		port, err := strconv.Atoi(portText)
		if !ok || !ok2 || err != nil {
			fail("--port [SERVICE.NAMESPACE:]SERVICEPORT=HOST:PORT, not %q", spec)
		}
		l, found := byAddress[vips[svcName]+":"+svcPort]
		if !found {
			l, found = byAddress["0.0.0.0:"+svcPort]
		}
		byPort := byAddress
		if !found {
			names := []string{}
			for k := range byPort {
				names = append(names, k)
			}
			sort.Strings(names)
			fail("Istio built no listener on port %s for %s (it built: %s)", target, proxySpec, strings.Join(names, " "))
		}
		m, ok := httpManager(l)
		if !ok {
			fail("Istio's listener on port %s is not HTTP", svcPort)
		}
		rds := m.GetRds().GetRouteConfigName()
		rc, found := routes[rds]
		if !found {
			fail("Istio's listener on port %s names route configuration %q, which it did not build", svcPort, rds)
		}
		m.RouteSpecifier = &hcm.HttpConnectionManager_RouteConfig{RouteConfig: rc}
		kept := m.HttpFilters[:0]
		for _, f := range m.HttpFilters {
			if !stockEnvoyLacks(f.Name, f.GetTypedConfig()) {
				kept = append(kept, f)
			}
		}
		m.HttpFilters = kept
		m.Tracing = nil // its provider is a cluster of istiod's mesh config
		typed, _ := anypb.New(m)
		boot.StaticResources.Listeners = append(boot.StaticResources.Listeners, &listener.Listener{
			Name:    "istio-" + svcPort,
			Address: socket(host, port),
			FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
				Name: "envoy.filters.network.http_connection_manager", ConfigType: &listener.Filter_TypedConfig{TypedConfig: typed}}}}},
		})
	}
	for _, c := range clusters {
		c = proto.Clone(c).(*cluster.Cluster)
		if c.GetType() == cluster.Cluster_EDS {
			c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}
			c.EdsClusterConfig = nil
			cla := assignments[c.Name]
			if cla == nil {
				cla = &endpoint.ClusterLoadAssignment{ClusterName: c.Name}
			}
			c.LoadAssignment = cla
		}
		c.TransportSocket = nil
		c.TransportSocketMatches = nil
		kept := c.Filters[:0]
		for _, f := range c.Filters {
			if !stockEnvoyLacks(f.Name, f.GetTypedConfig()) {
				kept = append(kept, f)
			}
		}
		c.Filters = kept
		if c.Name == "xds-grpc" || c.Name == "sds-grpc" || c.Name == "prometheus_stats" || c.Name == "agent" {
			continue
		}
		boot.StaticResources.Clusters = append(boot.StaticResources.Clusters, c)
	}
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(boot)
	if err != nil {
		fail("%v", err)
	}
	if *output == "-" {
		os.Stdout.Write(out)
	} else if err := os.WriteFile(*output, out, 0o644); err != nil {
		fail("%v", err)
	}
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

func socket(host string, port int) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(port)}}}}
}
