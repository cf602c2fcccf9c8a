import { useCallback, useEffect, useState, type FormEvent } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useApp } from "../App";
import { newRequestId, problem, type Problem } from "../api";
import { Banner, Field } from "../ui";
import { ItemKind, type InventoryItem, type Progress, type StoreItem } from "../gen/focusforge/gamification/v1/gamification_pb";
import { EventType } from "../gen/focusforge/events/v1/events_pb";

export function Rewards() {
  const { api, feed } = useApp();
  const [progress, setProgress] = useState<Progress | null>(null);
  const [items, setItems] = useState<StoreItem[]>([]);
  const [owned, setOwned] = useState<InventoryItem[]>([]);
  const [p, setP] = useState<Problem | null>(null);
  const [rewardProblem, setRewardProblem] = useState<Problem | null>(null);
  const [name, setName] = useState("");
  const [cost, setCost] = useState("");
  const [notice, setNotice] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const [pr, store, inv] = await Promise.all([
        api.points.getProgress({}),
        api.points.listStoreItems({}),
        api.points.listInventory({ pageSize: 20 }),
      ]);
      setProgress(pr.progress ?? null);
      setItems(store.items);
      setOwned(inv.items);
    } catch (e) {
      setP(problem(e));
    }
  }, [api]);

  useEffect(() => {
    void load();
    return feed.on((e) => {
      if (e.type === EventType.POINTS_AWARDED || e.type === EventType.ACHIEVEMENT_UNLOCKED) void load();
    });
  }, [feed, load]);

  async function redeem(item: StoreItem) {
    setP(null);
    setNotice(null);
    try {
      const r = await api.points.redeem({ itemId: item.id, requestId: newRequestId() });
      setNotice(`Redeemed “${item.name}”. Balance: ${r.balance} points.`);
      await load();
    } catch (e) {
      setP(problem(e));
    }
  }

  async function addReward(e: FormEvent) {
    e.preventDefault();
    setRewardProblem(null);
    try {
      await api.points.createReward({ name, cost: BigInt(cost.trim() === "" || !/^\d+$/.test(cost.trim()) ? 0 : cost.trim()) });
      setName("");
      setCost("");
      await load();
    } catch (err) {
      setRewardProblem(problem(err));
    }
  }

  const balance = progress ? Number(progress.balance) : 0;
  const span = progress ? Number(progress.nextLevelPoints - progress.levelStartPoints) : 0;
  const into = progress ? Number(progress.lifetimePoints - progress.levelStartPoints) : 0;
  return (
    <>
      <h1>Points &amp; store</h1>
      <Banner problem={p} />
      {notice && (
        <p className="outcome" role="status">
          {notice}
        </p>
      )}
      {progress && (
        <section aria-labelledby="progress-heading" className="card">
          <h2 id="progress-heading">Your progress</h2>
          <dl className="facts big">
            <dt>Balance</dt>
            <dd data-fact="balance">{balance} points</dd>
            <dt>Level</dt>
            <dd data-fact="level">{progress.level}</dd>
            <dt>Streak</dt>
            <dd data-fact="streak">
              {progress.streak?.currentDays ?? 0} day{progress.streak?.currentDays === 1 ? "" : "s"}
              {progress.streak && ` (longest ${progress.streak.longestDays})`}
            </dd>
            <dt>Tasks done</dt>
            <dd>{Number(progress.tasksCompleted)}</dd>
          </dl>
          {span > 0 && (
            <>
              <label htmlFor="level-progress">
                {Number(progress.nextLevelPoints) - Number(progress.lifetimePoints)} points to level {progress.level + 1}
              </label>
              <progress id="level-progress" max={span} value={Math.max(0, into)} />
            </>
          )}
          {progress.achievements.length > 0 && (
            <>
              <h3>Achievements</h3>
              <ul className="plain achievements">
                {progress.achievements.map((a) => (
                  <li key={a.id} className={a.unlockTime ? "unlocked" : ""}>
                    <strong>{a.name}</strong> {a.unlockTime ? "· unlocked" : `· ${Number(a.progress)} / ${Number(a.threshold)}`}
                    <div className="muted">{a.description}</div>
                  </li>
                ))}
              </ul>
            </>
          )}
        </section>
      )}
      <section aria-labelledby="store-heading" className="card">
        <h2 id="store-heading">Store</h2>
        <ul className="plain store">
          {items.map((item) => (
            <li key={item.id} data-item={item.name}>
              <div>
                <strong>{item.name}</strong> · {Number(item.cost)} points{item.kind === ItemKind.REWARD && " · your reward"}
                {item.description && <div className="muted">{item.description}</div>}
              </div>
              <button
                type="button"
                disabled={Number(item.cost) > balance}
                aria-label={`Redeem ${item.name} for ${Number(item.cost)} points`}
                onClick={() => void redeem(item)}
              >
                Redeem
              </button>
            </li>
          ))}
        </ul>
        <form onSubmit={addReward} className="grid-form" noValidate aria-labelledby="reward-heading">
          <h3 id="reward-heading">Add your own reward</h3>
          <Field label="Reward" name="name" problem={rewardProblem} hint="Something you would work for: a walk, a film">
            {(a) => <input {...a} value={name} onChange={(e) => setName(e.target.value)} />}
          </Field>
          <Field label="Cost in points" name="cost" problem={rewardProblem}>
            {(a) => <input {...a} inputMode="numeric" value={cost} onChange={(e) => setCost(e.target.value)} />}
          </Field>
          <Banner problem={rewardProblem} fields={["name", "cost"]} />
          <div className="actions">
            <button type="submit">Add reward</button>
          </div>
        </form>
      </section>
      <section aria-labelledby="owned-heading" className="card">
        <h2 id="owned-heading">Redeemed</h2>
        {owned.length === 0 ? (
          <p className="muted">Nothing yet.</p>
        ) : (
          <ul className="plain">
            {owned.map((i) => (
              <li key={String(i.sequence)} data-owned={i.name}>
                {i.name} <span className="muted">· {Number(i.cost)} points{i.redeemTime && ` · ${timestampDate(i.redeemTime).toLocaleDateString()}`}</span>
              </li>
            ))}
          </ul>
        )}
      </section>
    </>
  );
}
