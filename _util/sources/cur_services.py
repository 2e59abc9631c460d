"""The Cost and Usage Report's product codes as Cost Explorer names the services.

The report names a line item's service by its product code (`AmazonEC2`, `AWSLambda`);
Cost Explorer's SERVICE dimension uses long names ("Amazon Elastic Compute Cloud -
Compute", "AWS Lambda"). History, mutes, plots and page names are keyed by the service
name, so a user who switches from one source to the other must see the same names.

Most codes map one to one. EC2 is the exception: Cost Explorer splits `AmazonEC2` into
"Amazon Elastic Compute Cloud - Compute" (instance hours: product family Compute Instance,
Dedicated Host, and reservation fees) and "EC2 - Other" (volumes, snapshots, NAT gateways,
Elastic IPs, data transfer); the aggregation query makes that split (`EC2_OTHER_CODE`).
A code not in the table is kept as it is (Marketplace products, new services): a user
sees it named by its code until the table learns it.
"""
from __future__ import annotations

# The product code the aggregation gives EC2 lines that Cost Explorer calls "EC2 - Other".
EC2_OTHER_CODE = "AmazonEC2:Other"

# Product families of `AmazonEC2` lines Cost Explorer counts as "... - Compute".
EC2_COMPUTE_FAMILIES = ("Compute Instance", "Compute Instance (bare metal)", "Dedicated Host")

SERVICE_NAMES: dict[str, str] = {
    "AmazonEC2": "Amazon Elastic Compute Cloud - Compute",
    EC2_OTHER_CODE: "EC2 - Other",
    "AmazonRDS": "Amazon Relational Database Service",
    "AmazonS3": "Amazon Simple Storage Service",
    "AWSLambda": "AWS Lambda",
    "AmazonCloudFront": "Amazon CloudFront",
    "AmazonDynamoDB": "Amazon DynamoDB",
    "AmazonElastiCache": "Amazon ElastiCache",
    "AWSELB": "Elastic Load Balancing",
    "AmazonVPC": "Amazon Virtual Private Cloud",
    "AmazonCloudWatch": "AmazonCloudWatch",
    "awskms": "AWS Key Management Service",
    "AmazonRoute53": "Amazon Route 53",
    "AWSQueueService": "Amazon Simple Queue Service",
    "AmazonSNS": "Amazon Simple Notification Service",
    "AWSGlue": "AWS Glue",
    "AmazonAthena": "Amazon Athena",
    "AmazonES": "Amazon OpenSearch Service",
    "AmazonECS": "Amazon Elastic Container Service",
    "AmazonEKS": "Amazon Elastic Kubernetes Service",
    "AmazonEFS": "Amazon Elastic File System",
    "AWSSecretsManager": "AWS Secrets Manager",
    "AmazonSageMaker": "Amazon SageMaker",
    "AmazonKinesis": "Amazon Kinesis",
    "AWSBackup": "AWS Backup",
    "AmazonECR": "Amazon EC2 Container Registry (ECR)",
    "AmazonRedshift": "Amazon Redshift",
    "AmazonMSK": "Amazon Managed Streaming for Apache Kafka",
    "AmazonGuardDuty": "Amazon GuardDuty",
    "AWSConfig": "AWS Config",
    "AWSCloudTrail": "AWS CloudTrail",
    "AWSDataTransfer": "AWS Data Transfer",
    "AmazonStates": "AWS Step Functions",
    "AmazonApiGateway": "Amazon API Gateway",
    "AWSSystemsManager": "AWS Systems Manager",
    "AmazonLightsail": "Amazon Lightsail",
    "AmazonWorkSpaces": "Amazon WorkSpaces",
    "AWSCostExplorer": "AWS Cost Explorer",
    "AWSSupportBusiness": "AWS Support (Business)",
    "AWSSupportEnterprise": "AWS Support (Enterprise)",
    "ComputeSavingsPlans": "Savings Plans for AWS Compute usage",
    "AWSShield": "AWS Shield",
    "awswaf": "AWS WAF",
    "AmazonQuickSight": "Amazon QuickSight",
    "Tax": "Tax",
}


def service_name(product_code: str) -> str:
    """Cost Explorer's name for a product code (as the aggregation gives it); an unknown
    code is kept as it is."""
    return SERVICE_NAMES.get(product_code, product_code)


def product_code(service: str) -> str:
    """The product code of a Cost Explorer service name (the inverse of `service_name`,
    for writing a report from Cost Explorer's names, as the tests' generator does)."""
    return _CODES.get(service, service)


_CODES = {name: code for code, name in SERVICE_NAMES.items()}
