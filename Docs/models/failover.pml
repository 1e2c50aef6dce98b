/*
 * The failover protocol of decision 0012, for spin (Harness/spin.sh runs it; CI too).
 *
 * Two hosts, 1 (A, the original source) and 2 (B, the recovery host), and the vault. Each
 * `atomic` block is one durable step: a catalog transaction in the vault, a write of the site's
 * state file on a host, or a write acknowledged through the journal. Between any two steps a
 * host may crash (kill -9, power loss: its volatile state is lost, its durable state stays) and
 * its link to the vault may go down or come back. LSNs and generations are bounded to keep the
 * state space finite.
 *
 * Checked (assertions, and the invariant process `safety`):
 *   1. Never two writable generations: at most one host serves writes in the vault's current
 *      generation, and the vault takes records only from that host in that generation.
 *   2. A host told of a newer generation serves no write until re-protect makes it a replica.
 *   3. Planned failover loses no acknowledged write: every write the source acknowledged is at
 *      or below the fork, and in the vault, when the new generation begins.
 *   4. Re-protect never leaves a disk half resynced: the disk is its old state or the new one.
 *
 * Broken variants, each of which spin must refute (Harness/spin.sh checks that it does):
 *   -DBROKEN_MARKER_FIRST  planned failover writes its final marker before it stops writes
 *   -DBROKEN_NO_FENCE      a host told of a newer generation keeps serving
 *   -DBROKEN_IN_PLACE      re-protect resyncs into the disk itself, not a staged copy
 *   -DBROKEN_SAME_GENERATION  unplanned failover hands the disks over without a new generation
 */

#define MAXLSN 4
#define MAXGEN 3

#define NOBODY 0
#define A 1
#define B 2

/* site roles (durable, in the site's state) */
#define SOURCE 1
#define REPLICA 2
#define IDLE 3

/* the group's state in the vault (durable, in the catalog) */
#define PROTECTED 1
#define PLANNED 2      /* planned failover asked: the source drains */
#define FAILEDOVER 3   /* the new generation runs; its point may still change */
#define COMMITTED 4
#define REPROTECTING 5

/* a disk's content at a re-protect target */
#define OLD 1
#define NEW 2
#define MIXED 3

/* the vault */
byte vgen = 1;
byte vowner = A;
byte vstate = PROTECTED;
byte vheld = 0;        /* LSN the vault holds through, in the current generation */
byte fork = 0;         /* the fork LSN of the newest failover */
byte target = NOBODY;  /* planned failover's destination, re-protect's target */

/* the hosts: durable */
byte gen[3];
byte role[3];
byte lsn[3];           /* last LSN in the host's journal */
byte acked[3];         /* last write acknowledged to the workload */
bool draining[3];      /* told to drain for a planned failover */
byte marker[3];        /* the LSN of its final marker, once written */
bool fenced[3];        /* told of a newer generation */
byte disk[3];          /* a re-protect target's disk */
bool staged[3];        /* a staged resync is complete and waits for its switch */

/* the hosts: volatile */
bool up[3];
bool serving[3];
bool linked[3];

/* Serving writes: a source of the generation it holds, not draining, not fenced. */
inline startServing(h) {
  serving[h] = (role[h] == SOURCE && !draining[h] && !fenced[h])
}

/* What a host learns at any answer of the vault: its generation is not current. */
inline learn(h) {
  if
  :: gen[h] < vgen && role[h] != REPLICA ->
       fenced[h] = true;
#ifndef BROKEN_NO_FENCE
       serving[h] = false
#endif
  :: else -> skip
  fi
}

/* The workload's writes on a host (FUSE threads: apart from the host's other steps). */
proctype Writer(byte h) {
  do
  /* a write: journaled, then acknowledged */
  :: atomic { up[h] && serving[h] && lsn[h] < MAXLSN ->
       lsn[h]++; acked[h] = lsn[h];
       assert(!fenced[h]) }                                  /* 2 */
  od
}

/* What befalls a host from outside: kill -9 or power loss (only the durable state stays), a
   restart, its link to the vault going down or coming back. */
proctype Chaos(byte h) {
  do
  :: atomic { up[h] -> up[h] = false; serving[h] = false }
  /* restart: serves as its durable state says; asks the vault first when it can reach it */
  :: atomic { !up[h] -> up[h] = true; startServing(h);
       assert(disk[h] != MIXED);                                          /* 4 */
       if :: linked[h] -> learn(h) :: else -> skip fi }
  :: linked[h] = !linked[h]
  od
}

/* A host's protocol steps (the shipper, the control socket, re-protect's resync). */
proctype Host(byte h) {
  do
  /* shipping: the vault takes records of its current generation from its owner only */
  :: atomic { up[h] && linked[h] && lsn[h] > vheld && gen[h] == vgen && vowner == h ->
       vheld = lsn[h] }
  :: atomic { up[h] && linked[h] -> learn(h) }
  /* a planned failover reaches the source: stop writes, then the final marker, then drain */
  :: atomic { up[h] && linked[h] && vstate == PLANNED && vowner == h && !draining[h] && lsn[h] < MAXLSN ->
#ifdef BROKEN_MARKER_FIRST
       lsn[h]++; marker[h] = lsn[h];
       draining[h] = true }
     atomic { up[h] -> serving[h] = false }
#else
       draining[h] = true; serving[h] = false;
       lsn[h]++; marker[h] = lsn[h] }
#endif
  /* the operator took the planned failover back */
  :: atomic { up[h] && linked[h] && draining[h] && vstate != PLANNED && vgen == gen[h] ->
       draining[h] = false; marker[h] = 0; startServing(h) }
  /* re-protect, at its target — fenced first: it serves nothing while it is resynced — into a
     staged copy, then a switch to it at once */
  :: atomic { up[h] && linked[h] && vstate == REPROTECTING && target == h && fenced[h] && !staged[h] ->
#ifdef BROKEN_IN_PLACE
       disk[h] = MIXED }
     atomic { up[h] -> disk[h] = NEW;
#endif
       staged[h] = true }
  :: atomic { up[h] && staged[h] ->
       disk[h] = NEW; staged[h] = false; serving[h] = false;
       gen[h] = vgen; role[h] = REPLICA; fenced[h] = false; draining[h] = false; marker[h] = 0;
       lsn[h] = vheld; acked[h] = vheld }
  od
}

/* The operator on the vault host: the failover commands, each a durable step in the catalog. */
proctype Operator() {
  byte p;
  do
  /* planned failover A→B or B→A: asked, then committed once the source drained */
  :: atomic { vstate == PROTECTED && vgen < MAXGEN -> vstate = PLANNED; target = 3 - vowner }
  :: atomic { vstate == PLANNED && draining[vowner] && marker[vowner] > 0 && vheld >= marker[vowner] ->
       assert(acked[vowner] <= marker[vowner]);                 /* 3 */
       fork = marker[vowner]; vheld = fork; vgen++; vowner = target; vstate = FAILEDOVER;
       gen[target] = vgen; role[target] = SOURCE; lsn[target] = fork; acked[target] = fork;
       fenced[target] = false; draining[target] = false; marker[target] = 0;
       startServing(target) }
  :: atomic { vstate == PLANNED -> vstate = PROTECTED }
  /* unplanned failover to a chosen point at or below what the vault holds */
  :: atomic { (vstate == PROTECTED || vstate == PLANNED) && vgen < MAXGEN ->
       p = vheld;
       if :: p > 0 -> p-- :: skip fi;
       target = 3 - vowner;
#ifndef BROKEN_SAME_GENERATION
       vgen++;
#endif
       fork = p; vowner = target; vstate = FAILEDOVER; vheld = p;
       gen[target] = vgen; role[target] = SOURCE; lsn[target] = p; acked[target] = p;
       fenced[target] = false; draining[target] = false; marker[target] = 0;
       startServing(target) }
  :: atomic { vstate == FAILEDOVER -> vstate = COMMITTED }
  /* re-protect toward the host that lost its generation, once it is reachable */
  :: atomic { vstate == COMMITTED && up[3 - vowner] && linked[3 - vowner] ->
       target = 3 - vowner; vstate = REPROTECTING; disk[target] = OLD }
  :: atomic { vstate == REPROTECTING && role[target] == REPLICA && gen[target] == vgen ->
       vstate = PROTECTED }
  od
}

/* Checked in every state reached. */
active proctype safety() {
  do
  :: atomic {
       assert(!(serving[A] && serving[B] && gen[A] == gen[B]));             /* 1 */
       assert(!(serving[A] && gen[A] == vgen && vowner != A));              /* 1 */
       assert(!(serving[B] && gen[B] == vgen && vowner != B)) }             /* 1 */
  od
}

init {
  atomic {
    gen[A] = 1; role[A] = SOURCE; up[A] = true; serving[A] = true; linked[A] = true; disk[A] = OLD;
    gen[B] = 0; role[B] = IDLE; up[B] = true; linked[B] = true; disk[B] = OLD;
    run Host(A); run Host(B); run Writer(A); run Writer(B); run Chaos(A); run Chaos(B); run Operator()
  }
}
