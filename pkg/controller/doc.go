// Package controller is IPP's controller for dedicated mode. It creates the instance of each
// isolation class's dedicated node when Pods of the class wait for it, binds the Node that
// registers to the class once its providerID matches the instance, and deletes instance and Node
// when the class has been idle for the idle TTL.
//
// # Shape
//
// It follows sample-controller: shared informers narrowed by label selector (newInformerFactories),
// event handlers that only enqueue, a typed rate-limited workqueue keyed by dedicated node name (so
// a burst of Pod events for one class becomes one reconcile), and workers that reconcile one name at
// a time. The provider's List is polled every Options.ProviderResync into an in-memory index, which
// Create and Delete results update at once; no reconcile runs before the first successful List,
// and a poll enqueues the names whose instances changed. Timers (idle TTL, registration timeout,
// back-off) are AddAfter on the queue, whose clock is Options.Clock. Informers cache trimmed
// Pods and Nodes (the fields reconciles read), and updates that change none of those fields,
// such as kubelet status heartbeats, enqueue nothing: a settled cluster costs no reconciles.
//
// # Level-triggered
//
// A reconcile of dedicated node N reads three inputs and nothing else that matters:
//   - demand: live (not terminal, not being deleted) Pods outside the exempt namespaces whose class
//     maps to N and whose nodeSelector pins them to N;
//   - the Nodes that are or claim to be N: the Node named N and Nodes whose binding label says N;
//   - the provider's live instances for N.
//
// From them: duplicates are deleted (keeping the instance whose providerID the Node has, else the
// oldest); a Node whose providerID is the instance's is bound, any other Node claiming N is never
// bound, loses a binding label it has, and gets an UntrustedNode Warning; demand with no instance
// creates one; an instance whose Node has not registered within the registration timeout is
// deleted (and created again while demand remains); a bound Node without demand is marked idle
// (label isolation.IdleSinceLabel, so a restart does not restart the TTL) and reaped after the
// idle TTL. The idle clock and the reaping marks are labels under node-restriction.kubernetes.io/,
// which the Node's kubelet cannot write, and the controller reads none of the Node's annotations:
// a node cannot keep itself alive. An instance with neither demand nor Node is treated like one waiting for its Node: it
// is deleted once the registration timeout since its creation has passed, and if its Node does
// register it is reaped after the idle TTL like any other. So an instance is never deleted before
// it has had the chance to register, and a class that comes back soon finds its node.
//
// # Join tokens
//
// With Options.MintJoinTokens each creation first mints the instance's bootstrap token (a Secret
// labelled with the cluster name) and records it in memory until the Node is bound or the
// instance deleted; deleting an instance deletes its token. Before the Secret is created, the
// token is recorded in the journal, ConfigMap JournalName in Options.JournalNamespace (one key
// "<cluster>.<token id>" per token, naming its node and when it was minted; see journal.go). After
// every provider List the controller reads the journal once, and for each token of this cluster
// that no live instance carries, no creation in progress holds and that was minted before the
// List started, it deletes the Secret (already gone is fine) and then the entry. That removes the
// orphans (a crash between minting and Create, an instance deleted behind the controller's back)
// and the entries of tokens used or deleted with their instance, so the journal holds only the
// tokens of live instances and creations in progress. The controller never reads a Secret:
// RBAC cannot grant a read of some Secrets in kube-system only. NodeOfJoinToken and RequestList are
// the CSR approver's view: it decides a CSR only from a List that started after the CSR, and
// RequestList starts one at once instead of after the resync period.
//
// What the controller keeps in memory (the idempotency key of a creation in progress, the Events
// already emitted, the back-off of provider calls) only saves calls and Events; a restart loses
// none of the state decisions depend on. The one exception is deliberate: the per-namespace
// creation rate limit (Options.NamespaceCreateQPS) keeps its token buckets in memory, so a restart
// gives every namespace a full burst again.
//
// # NodeClasses and limits
//
// A dedicated node's NodeClass is its oldest waiting Pod's (nodeclass.NameOf), then the one its
// instance records; it gives the instance's shape, idle TTL and registration timeout. The limits
// (Options.MaxInstances and the NodeClass's) are counted by the ledger (limits.go): the live
// instances of the index plus a slot per creation in flight, reserved under one mutex before
// Create, and, after a restart, the join token journal's entries that no listed instance carries.
// The waiting nodes are enqueued again when an instance goes or a NodeClass changes. The leader
// writes each NodeClass's status from a small queue of its own (nodeclasses.go).
//
// # Idempotency keys
//
// See IdempotencyKey for how a creation's key is chosen and where its failure window lies.
//
// # Errors
//
// A provider error backs the node off exponentially (Options.RetryBaseDelay up to RetryMaxDelay);
// the back-off holds provider calls for that node even when events trigger a reconcile earlier.
// An error that a retry cannot fix (cloudprovider.KindInvalid) waits the maximum delay. Waiting
// Pods get a ProvisioningFailed Event naming the error's kind.
package controller
