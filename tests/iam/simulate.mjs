// Evaluates IAM requests with @cloud-copilot/iam-simulate (a development dependency:
// AGPL, never shipped). One process serves a whole test session: it reads one JSON
// simulation per line on stdin ({"id": ..., "simulation": {...}}) and answers one JSON
// line per request on stdout: {"id", "result", "why"} where `result` is the simulator's
// overallResult (Allowed, ImplicitlyDenied, ExplicitlyDenied) or "Error", and `why` names
// what decided it: the statements that denied, or the statements that would have matched
// the action but not the resource or conditions.
import { createInterface } from 'node:readline'
import { runSimulation } from '@cloud-copilot/iam-simulate'

function statementName(match) {
  const sid = match.statement?.Sid
  return `${match.policyId ?? 'resource policy'}:${sid ?? '(no Sid)'}`
}

function failedConditions(match) {
  return (match.explain?.conditions ?? [])
    .filter((condition) => !condition.matches)
    .map((condition) => {
      const got = condition.resolvedConditionKeyValue
      return `${condition.operator} ${condition.conditionKeyValue} (request: ${got === undefined ? 'absent' : JSON.stringify(got)})`
    })
}

function describe(analysis, label) {
  if (!analysis) return []
  const lines = []
  for (const match of analysis.denyStatements ?? []) {
    lines.push(`${label} denied by ${statementName(match)}`)
  }
  for (const match of analysis.unmatchedStatements ?? []) {
    if (!match.actionMatch || match.statement?.Effect !== 'Allow') continue
    const reasons = []
    if (!match.resourceMatch) reasons.push('resource does not match')
    if (match.principalMatch === 'NoMatch') reasons.push('principal does not match')
    reasons.push(...failedConditions(match))
    lines.push(`${label} ${statementName(match)} does not apply: ${reasons.join('; ')}`)
  }
  lines.push(`${label}: ${analysis.result}`)
  return lines
}

async function evaluate(simulation) {
  const response = await runSimulation(simulation, {})
  if (response.resultType === 'error') {
    return { result: 'Error', why: [JSON.stringify(response.errors)] }
  }
  const analysis = response.resultType === 'single' ? response.result.analysis : response.results[0]?.analysis
  const why =
    response.overallResult === 'Allowed'
      ? []
      : [...describe(analysis?.identityAnalysis, 'identity policy'), ...describe(analysis?.resourceAnalysis, 'resource policy')]
  return { result: response.overallResult, why }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let id = null
  try {
    const request = JSON.parse(line)
    id = request.id
    const answer = await evaluate(request.simulation)
    process.stdout.write(JSON.stringify({ id, ...answer }) + '\n')
  } catch (error) {
    process.stdout.write(JSON.stringify({ id, result: 'Error', why: [String(error?.stack ?? error)] }) + '\n')
  }
}
