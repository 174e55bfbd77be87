-- The SQL half of the Dask walkthrough, on rask's embedded local cluster.
-- Run it with:  cargo run --release -- query -f sample_data/walkthrough.sql
--
-- timeseries() is dask.datasets.timeseries(): one row a second through January
-- 2000 (2,592,000 rows in 30 daily partitions), generated as the query runs.

-- 1. groupby-agg: df.groupby('name').agg({'x': 'max', 'y': 'mean'}).head()
SELECT name, max(x) AS x, avg(y) AS y
FROM timeseries()
GROUP BY name
ORDER BY name
LIMIT 5;

-- 2. apply: df['x2'] = df['x'].apply(lambda val: val**2)
SELECT timestamp, id, name, x, y, x * x AS x2
FROM timeseries()
LIMIT 5;

-- 3. map_partitions(my_multi_function): big_string and new_value on every row
SELECT timestamp, id, name, x, y,
       x * x AS x2,
       id || '-' || name AS big_string,
       x + y AS new_value
FROM timeseries()
ORDER BY timestamp;

-- 4. df['name'].unique(): the people of the second half of the walkthrough
SELECT DISTINCT name FROM timeseries() ORDER BY name;
