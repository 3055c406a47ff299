/**
 * Submit a job as YAML. The server checks the spec as you type (the same checks as a submission, nothing
 * submitted), and each problem is marked at its line; submitting goes to the new job's page.
 */
import { useEffect, useMemo, useRef, useState } from 'react';
import { ApiError } from '@tutti/client';
import { client } from '../api.ts';
import { Card, describeError } from '../components/common.tsx';
import { navigate } from '../hooks.ts';
import { jobHref } from '../lib/routes.ts';
import { describeFieldError, offsetOfLine, placeErrors } from '../lib/spec-errors.ts';
import type { FieldErrorView } from '../lib/spec-errors.ts';

const TEMPLATE = `# A job: its ranks run \`run\` with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, ...).
name: hello
team: default
resources:
  gpus: 1
run: |
  echo "hello from rank $RANK of job $TUTTI_JOB_ID"
max_duration: 10m
`;

type Check = { state: 'idle' } | { state: 'checking' } | { state: 'valid' } | { state: 'invalid'; message: string; fields: FieldErrorView[] } | { state: 'failed'; message: string };

function toCheck(error: unknown): Check {
  if (error instanceof ApiError && (error.status === 400 || error.status === 422)) {
    return { state: 'invalid', message: error.message, fields: error.body.error.fields ?? [] };
  }
  return { state: 'failed', message: describeError(error instanceof Error ? error : new Error(String(error))) };
}

export function SubmitPage() {
  const [text, setText] = useState(TEMPLATE);
  const [check, setCheck] = useState<Check>({ state: 'idle' });
  const [submitting, setSubmitting] = useState(false);
  const editor = useRef<HTMLTextAreaElement>(null);
  const gutter = useRef<HTMLDivElement>(null);
  const generation = useRef(0);
  const lineCount = text.split('\n').length;

  const validate = async (yaml: string) => {
    const mine = ++generation.current;
    setCheck({ state: 'checking' });
    try {
      await client.validateJob(yaml);
      if (mine === generation.current) setCheck({ state: 'valid' });
    } catch (error) {
      if (mine === generation.current) setCheck(toCheck(error));
    }
  };

  // Check a moment after typing stops.
  useEffect(() => {
    const id = setTimeout(() => void validate(text), 600);
    return () => clearTimeout(id);
  }, [text]);

  const submit = async () => {
    setSubmitting(true);
    generation.current++;
    try {
      const job = await client.submitJob(text);
      navigate(jobHref(job.id));
    } catch (error) {
      setCheck(toCheck(error));
    } finally {
      setSubmitting(false);
    }
  };

  const placed = useMemo(() => (check.state === 'invalid' ? placeErrors(check.fields, lineCount) : undefined), [check, lineCount]);
  const goToLine = (line: number) => {
    const area = editor.current;
    if (!area) return;
    const at = offsetOfLine(text, line);
    area.focus();
    area.setSelectionRange(at, at);
    const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 18;
    area.scrollTop = Math.max(0, (line - 3) * lineHeight);
  };

  return (
    <div className="page submit">
      <h1>Submit a job</h1>
      <Card title="Job spec (YAML)">
        <div className="editor">
          <div className="gutter" ref={gutter} aria-hidden="true">
            {Array.from({ length: lineCount }, (_, i) => {
              const errors = placed?.byLine.get(i + 1);
              return (
                <div key={i} className={errors ? 'gutter-line has-error' : 'gutter-line'} data-line={i + 1} title={errors?.map((e) => e.message).join('\n')}>
                  {errors ? '● ' : ''}
                  {i + 1}
                </div>
              );
            })}
          </div>
          <textarea
            ref={editor}
            value={text}
            onChange={(e) => setText(e.target.value)}
            onScroll={(e) => {
              if (gutter.current) gutter.current.scrollTop = e.currentTarget.scrollTop;
            }}
            onKeyDown={(e) => {
              if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
                e.preventDefault();
                void submit();
              }
            }}
            spellCheck={false}
            autoCapitalize="off"
            autoComplete="off"
            wrap="off"
            aria-label="job spec in YAML"
            aria-describedby="spec-check"
            aria-invalid={check.state === 'invalid'}
            rows={Math.min(30, Math.max(14, lineCount + 1))}
          />
        </div>
        <div className="toolbar">
          <button type="button" onClick={() => void validate(text)}>
            Check
          </button>
          <button type="button" className="primary" disabled={submitting} onClick={() => void submit()}>
            {submitting ? 'Submitting…' : 'Submit'}
          </button>
          <span className="muted small">Ctrl+Enter submits.</span>
        </div>
        <div id="spec-check" className="spec-check" aria-live="polite" data-testid="spec-check">
          {check.state === 'checking' && <p className="muted">Checking…</p>}
          {check.state === 'valid' && <p className="ok">The server accepts this spec.</p>}
          {check.state === 'failed' && <p role="alert">Could not check: {check.message}</p>}
          {check.state === 'invalid' && (
            <div role="alert">
              <p>
                <strong>The server would refuse this spec:</strong> {check.fields.length === 0 ? check.message : `${check.fields.length} problem${check.fields.length === 1 ? '' : 's'}`}
              </p>
              <ul className="spec-errors">
                {check.fields.map((field, i) => (
                  <li key={i} data-line={field.line ?? ''}>
                    {field.line !== undefined ? (
                      <button type="button" className="link" onClick={() => goToLine(field.line!)}>
                        {describeFieldError(field)}
                      </button>
                    ) : (
                      describeFieldError(field)
                    )}
                  </li>
                ))}
              </ul>
            </div>
          )}
        </div>
      </Card>
    </div>
  );
}
