/** A uPlot line chart of one ChartData, redrawn in place as data arrives; sized to its container. */
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { ChartData } from '../lib/series.ts';

const PALETTE = ['#2b6cb0', '#d97706', '#059669', '#c026d3', '#dc2626', '#0891b2', '#65a30d', '#7c3aed'];

export function Chart({ title, data, yLabel, height = 200 }: { title: string; data: ChartData; yLabel?: string; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  // The range is read when uPlot rescales (on every setData), so it follows the data without a rebuild.
  const xRange = useRef(data.xRange);
  xRange.current = data.xRange;
  const shape = `${data.xIsTime}|${data.xRange !== undefined}|${data.series.map((s) => s.label).join('|')}`;

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height,
      scales: { x: { time: data.xIsTime, ...(data.xRange ? { range: (_u: uPlot, min: number, max: number): uPlot.Range.MinMax => (xRange.current ? [xRange.current[0], xRange.current[1]] : [min, max]) } : {}) } },
      axes: [{ stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.2)' } }, { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.2)' }, ...(yLabel ? { label: yLabel } : {}) }],
      series: [{ label: data.xIsTime ? 'time' : 'step' }, ...data.series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length]!, width: 1.5, spanGaps: true }))],
      legend: { live: true },
      // The x range drawn, readable from the page (the axes are drawn on a canvas).
      hooks: {
        setScale: [
          (u, key) => {
            if (key !== 'x') return;
            element.dataset['xMin'] = String(u.scales['x']?.min ?? '');
            element.dataset['xMax'] = String(u.scales['x']?.max ?? '');
          },
        ],
      },
    };
    const instance = new uPlot(options, [data.x, ...data.series.map((s) => s.values)] as uPlot.AlignedData, element);
    plot.current = instance;
    const resize = new ResizeObserver(() => instance.setSize({ width: Math.max(200, element.clientWidth), height }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      instance.destroy();
      plot.current = undefined;
    };
    // Rebuilt only when the series change; new points go through setData below.
  }, [shape, height, yLabel]);

  useEffect(() => {
    plot.current?.setData([data.x, ...data.series.map((s) => s.values)] as uPlot.AlignedData);
  }, [data]);

  const empty = data.x.length === 0;
  return (
    <figure className="chart" aria-label={title}>
      <figcaption>{title}</figcaption>
      <div ref={box} className="chart-canvas" role="img" aria-label={`${title}: ${empty ? 'no data yet' : `${data.x.length} points of ${data.series.map((s) => s.label).join(', ')}`}`} />
      {empty && <p className="muted chart-empty">No data yet.</p>}
    </figure>
  );
}
